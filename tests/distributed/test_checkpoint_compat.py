"""A run directory written by an earlier release still resumes: fixtures/run-0.1.0 is a serial run
of frontier 0.1.0 (CartPole-v1 and Pendulum-v1, a tiny model) stopped by SIGTERM at 50 of its 80
updates. Never regenerate it to make this test pass: a failure here means users' runs would break."""
import json
import shutil
from pathlib import Path

from frontier.cli import main
from frontier.distributed.replay import read_shards

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"


def test_a_run_of_release_0_1_0_resumes_and_finishes(tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    stored = sum(len(eps) for _, eps, _ in read_shards(run_dir / "replay"))
    assert json.loads((run_dir / "summary.json").read_text())["learner_updates"] == 50

    assert main(["train", "--resume", str(run_dir), "--serial"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["learner_updates"] == 80, summary
    assert (run_dir / "checkpoints" / "ckpt-00000080").is_dir() and (run_dir / "model.safetensors").is_file()
    assert sum(len(eps) for _, eps, _ in read_shards(run_dir / "replay")) > stored  # kept the old, added new
    assert summary["compute"]["env_steps_by_source"]["scripted"] == 1400  # experts not collected again
    assert "Traceback" not in capsys.readouterr().out
