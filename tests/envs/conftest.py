import warnings

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Reference measurements go to a per-test cache, never the user's."""
    monkeypatch.setenv("FRONTIER_CACHE_DIR", str(tmp_path / "cache"))
    warnings.filterwarnings("ignore", module="gymnasium")
    yield
