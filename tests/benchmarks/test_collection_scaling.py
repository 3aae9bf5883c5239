"""Collection and scaling benchmarks (quick, tiny)."""
import json
import math

import torch


def _finite_positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_quick_collection_benchmark(tmp_path):
    from frontier.benchmarks import collection

    torch.set_num_threads(1)
    data = collection.run(quick=True, out=tmp_path, tasks=("Hopper-v5",), num_envs=(8,), steps=30, rounds=1)
    saved = json.loads((tmp_path / "collection.json").read_text())
    assert saved["machine"]["cores"] >= 1
    figs = saved["results"]["Hopper-v5"]["8"]
    assert set(figs) == set(collection.CONTENDERS)
    assert all(_finite_positive(f["steps_per_s"]) for f in figs.values())
    assert _finite_positive(saved["odt_speedup_last_vs_full"]["Hopper-v5"]["8"])
    assert [r["ratio"] for r in saved["ratios"]] == ["mlp/rllib", "mlp/raw", "odt/rllib"]  # the 8-env targets
    assert all(_finite_positive(r["value"]) and r["met"] == (r["value"] >= r["target"]) for r in saved["ratios"])
    assert (tmp_path / "collection.png").stat().st_size > 0
    assert "| Hopper-v5 | odt/rllib | 8 |" in (tmp_path / "collection.md").read_text()
    assert data["results"] == saved["results"]


def test_quick_scaling_benchmark(tmp_path, monkeypatch):
    from frontier.benchmarks import scaling

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # One policy keeps the Ray part small (3 actors); the ODT one is RolloutWorker's default path.
    scaling.run(quick=True, out=tmp_path, actors=(1, 2), policies=("mlp",), num_envs=2, steps=20, rounds=1)
    saved = json.loads((tmp_path / "scaling.json").read_text())
    for policy in ("mlp",):
        for n in ("1", "2"):
            fig = saved["results"][policy][n]
            assert _finite_positive(fig["steps_per_s"]) and _finite_positive(fig["per_actor"])
        assert saved["results"][policy]["1"]["speedup_vs_1"] == 1.0
    assert saved["physical_cores"] >= 1
    assert (tmp_path / "scaling.png").stat().st_size > 0

