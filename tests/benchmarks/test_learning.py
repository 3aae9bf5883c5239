"""`frontier bench learning --quick`: a real (tiny) serial run, read back from TensorBoard."""
import json

import pytest

from frontier.benchmarks import learning


def test_quick_learning_benchmark_writes_curves(tmp_path, monkeypatch):
    monkeypatch.setattr(learning, "RUNS_DIR", tmp_path / "runs")
    out = tmp_path / "results"
    learning.run(quick=True, out=out)
    data = json.loads((out / "learning.json").read_text())
    curve = data["quick"]["curves"]["CartPole-v1"][0]
    # Evaluations every 10 of 40 updates, the final one standing for the one due at 40: env steps
    # and wall time increase.
    assert len(curve["env_steps"]) == 4
    assert curve["env_steps"] == sorted(curve["env_steps"]) and curve["env_steps"][0] > 0
    assert curve["wall_s"] == sorted(curve["wall_s"])
    assert len(data["quick"]["final_normalized"]["CartPole-v1"]) == 1
    assert (out / "learning_quick_steps.png").stat().st_size > 0
    assert "Not run: --quick" in (out / "learning.md").read_text()
    # A finished run is read back, not retrained.
    mtime = (tmp_path / "runs" / "quick-smoke" / "s0" / "summary.json").stat().st_mtime
    learning.run(quick=True, out=out)
    assert (tmp_path / "runs" / "quick-smoke" / "s0" / "summary.json").stat().st_mtime == mtime


@pytest.mark.parametrize("ret,expected", [(-20.272305, 0.0), (3234.3, 100.0)])
def test_d4rl_score_endpoints(ret, expected):
    assert learning.d4rl_score("Hopper-v5", ret) == pytest.approx(expected)


def test_bench_command_selects_benchmarks_and_rejects_unknown_ones(capsys):
    from frontier.cli import main
    from frontier.cli.bench import BENCHMARKS, selected

    assert selected([]) == selected(["all"]) == list(BENCHMARKS)
    assert selected(["replay", "learner", "replay"]) == ["replay", "learner"]
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_one_suite_is_rerun_and_the_others_sections_are_kept(tmp_path, monkeypatch, capsys):
    from frontier.cli import main

    monkeypatch.setattr(learning, "RUNS_DIR", tmp_path / "runs")
    out = tmp_path / "results"
    assert main(["bench", "learning", "--suite", "low", "--quick", "--out", str(out)]) == 2
    assert "no earlier learning results" in capsys.readouterr().err and not (out / "learning.md").exists()
    assert main(["bench", "learning", "--suite", "nope", "--out", str(out)]) == 2
    assert "unknown learning suite 'nope'" in capsys.readouterr().err
    assert main(["bench", "replay", "--suite", "low", "--out", str(out)]) == 2
    # Earlier results: one marked section per suite. Rerunning "low" replaces only its section.
    out.mkdir()
    (out / "learning.json").write_text(json.dumps({"quick": {"q": 1}, "medium": {"m": 2}, "low": {"l": 3}}))
    (out / "learning.md").write_text("# Benchmark: learning\n\nintro\n\n## Quick\n\nQ table\n\n## Medium\n\nM\n\n"
                                     "### sub\n\nM2\n\n## Low\n\nold low\n")
    monkeypatch.setattr(learning, "SUITES", {**learning.SUITES, "low": lambda quick, out: ({"l": 4}, "## Low\n\nnew low\n")})
    learning.run(quick=True, out=out, suites=["low"])
    data = json.loads((out / "learning.json").read_text())
    assert (data["quick"], data["medium"], data["low"]) == ({"q": 1}, {"m": 2}, {"l": 4})
    md = (out / "learning.md").read_text()
    assert "Q table" in md and "### sub\n\nM2" in md and "new low" in md and "old low" not in md


def test_a_stopped_run_stops_the_benchmark_instead_of_starting_the_next(tmp_path, monkeypatch):
    from frontier.distributed import trainer

    monkeypatch.setattr(trainer.Trainer, "run", lambda self: {"status": "failed", "stop_reason": "terminated"})
    with pytest.raises(SystemExit, match="stopped \\(terminated\\); run the benchmark again to resume"):
        learning.train(learning.ROOT / "configs" / "quick.yaml", learning.QUICK_OVERRIDES, tmp_path / "run")


def test_offline_evaluation_is_matched_on_its_updates(tmp_path):
    lines = [{"updates": 500, "env_steps": 1000, "returns": {"Hopper-v5": [10.0, 20.0]}},
             {"updates": 2000, "env_steps": 1000, "returns": {"Hopper-v5": [30.0]}},
             {"updates": 2500, "env_steps": 3000, "returns": {"Hopper-v5": [50.0]}}]
    (tmp_path / "evals.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert learning.evaluation_at(tmp_path, "Hopper-v5", 2000) == (1, 30.0)
    # The evaluation at 1,000 updates is missing: no other one stands in for it.
    with pytest.raises(ValueError, match="no evaluation of Hopper-v5 at 1000 updates"):
        learning.evaluation_at(tmp_path, "Hopper-v5", 1000)


def test_bench_writes_under_runs_bench_by_default_not_over_the_committed_results():
    from frontier.cli import build_parser

    args = build_parser().parse_args(["bench", "learning", "--quick"])
    assert args.out == "runs/bench"


def test_a_quick_bench_refuses_the_committed_results(capsys):
    from frontier.cli import main
    from frontier.cli.bench import COMMITTED

    assert COMMITTED.is_dir()
    assert main(["bench", "replay", "--quick", "--out", str(COMMITTED)]) == 2
    assert "do not go into" in capsys.readouterr().err
