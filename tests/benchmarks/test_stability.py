"""`frontier bench stability --quick`: one tiny serial run on the first confirmation seed, read back."""
import json

from frontier.benchmarks import stability


def test_quick_stability_benchmark_reports_every_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(stability, "RUNS_DIR", tmp_path / "runs")
    out = tmp_path / "results"
    stability.run(quick=True, out=out)
    data = json.loads((out / "stability.json").read_text())
    arm = data["arms"]["after-serial"]
    assert data["seeds"] == [100] and [r["seed"] for r in arm["runs"]] == [100]
    assert list(arm["final_normalized"]) == ["CartPole-v1"] and len(arm["final_normalized"]["CartPole-v1"]) == 1
    assert arm["worst"] == arm["final_normalized"]["CartPole-v1"][0]
    md = (out / "stability.md").read_text()
    assert "confirmation seeds 100" in md and "every task-seed >= 0.7" in md
    summary = json.loads((tmp_path / "runs" / "smoke" / "s100" / "summary.json").read_text())
    assert summary["status"] == "finished"
