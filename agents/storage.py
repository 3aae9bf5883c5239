"""Episodes on disk: one `.npz` file holds a list of whole episodes (numpy only).

A file holds, for each of its N episodes i, arrays `<i>/observations`, `<i>/actions`,
`<i>/rewards`, and one JSON string `meta`: a list of N `{"task", "terminated", "source",
...extra}` records. Files are written to a temporary name, fsynced, then renamed, so a
reader never sees half a file. The replay store's shards and datasets use this format.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from frontier.agents.trajectory import Episode


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_episodes(path: str | Path, episodes: Sequence[Episode], extra: dict | None = None) -> None:
    """Write `episodes` to `path` atomically; `extra` is merged into every episode's meta record."""
    path = Path(path)
    arrays = {}
    meta = []
    for i, ep in enumerate(episodes):
        arrays[f"{i}/observations"] = ep.observations
        arrays[f"{i}/actions"] = ep.actions
        arrays[f"{i}/rewards"] = ep.rewards
        success = {} if ep.success is None else {"success": bool(ep.success)}
        meta.append({"task": ep.task, "terminated": bool(ep.terminated), "source": ep.source, **success, **(extra or {})})
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(buf.getbuffer())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_episodes(path: str | Path) -> tuple[list[Episode], list[dict]]:
    """(episodes, meta records) of one file; ValueError naming the file if it is unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            episodes = [
                Episode(
                    task=m["task"],
                    observations=z[f"{i}/observations"],
                    actions=z[f"{i}/actions"],
                    rewards=z[f"{i}/rewards"],
                    terminated=m["terminated"],
                    source=m["source"],
                    success=m.get("success"),
                )
                for i, m in enumerate(meta)
            ]
    except Exception as e:  # corrupt or truncated file: name it, never skip it
        raise ValueError(f"episode file {path} is unreadable: {type(e).__name__}: {e}") from None
    return episodes, meta
