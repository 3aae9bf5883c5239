"""The one reader of frontier's JSON record files (dataset.json, policy cards, zoo indexes): a
JSON object, or one ValueError that names the file and what is wrong with it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence


def read_json_object(path: str | Path, what: str, required: Sequence[str] = (), missing_hint: str = "") -> dict:
    """The JSON object in `path`, a `what` ("policy card"); ValueError naming the file if it is
    missing (with `missing_hint`), unreadable, not a JSON object, or lacks a `required` key."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing" + (f": {missing_hint}" if missing_hint else ""))
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is unreadable: {type(e).__name__}: {e}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a {what}: a JSON object was expected, got {type(record).__name__}")
    missing = [k for k in required if k not in record]
    if missing:
        raise ValueError(f"{path} is not a {what}: it lacks {', '.join(missing)}")
    return record
