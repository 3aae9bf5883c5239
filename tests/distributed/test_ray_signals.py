"""SIGTERM and Ctrl-C (SIGINT) of `frontier train` on Ray: a final checkpoint whose compute counters
agree with its update count, a summary that says why the run stopped, the documented exit code."""
import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

# One task, long expert episodes (little padding, so every update trains on about as many real
# steps), and train calls of 50 updates, so a call in flight at the stop is a quarter of the run or more.
CONFIG = {
    "tasks": ["CartPole-v1"], "seed": 0, "experts": {"episodes": 4},
    "model": {"embed_dim": 16, "n_layers": 1, "n_heads": 2, "context_len": 8, "dropout": 0.0},
    "learner": {"warmup_updates": 10},
    "train": {"batch_size": 16, "pretrain_updates": 50, "online_updates": 1_000_000, "updates_per_round": 50,
              "explore_steps_per_round": 200, "eval_every": 1_000_000, "eval_episodes": 1, "final_eval_episodes": 1},
    "rollout": {"envs_per_worker": 1, "explore_workers": 1, "eval_workers": 1, "weights_every": 50},
    "checkpoint_every": 50,
}


def foreground_signals() -> None:
    """In the child: SIGINT and SIGQUIT as a terminal's foreground job has them. A job started in
    the background by a non-interactive shell (`cmd &`, as CI scripts and nohup runs do) inherits
    them IGNORED, and so would this test's run, which then never sees its Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.mark.parametrize("sig, reason, code", [(signal.SIGTERM, "terminated", 143), (signal.SIGINT, "interrupted", 130)])
def test_a_signal_on_ray_ends_in_a_checkpoint_that_agrees_with_its_counters(tmp_path, sig, reason, code):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "frontier.cli", "train", str(tmp_path / "c.yaml"),
                             "--out", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=foreground_signals)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "ckpt-00000150").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == code, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["stop_reason"] == reason, summary
    assert f"status failed ({reason})" in out and "Traceback" not in out, out
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt-*"))
    last = json.loads((checkpoints[-1] / "run_state.json").read_text())
    assert last["updates"] == summary["learner_updates"] == int(checkpoints[-1].name.split("-")[1])
    # FLOPs per update of the stop's checkpoint against the last periodic one: equal but for the
    # sampled windows' padding (a call left unbooked would make it a quarter or more lower).
    periodic = json.loads((run_dir / "checkpoints" / "ckpt-00000150" / "run_state.json").read_text())
    ratio = (last["learner_flops"] / last["updates"]) / (periodic["learner_flops"] / periodic["updates"])
    # A signal that lands between train calls finds none in flight: the stop's checkpoint is then
    # the periodic one (150), which the ratio check cannot fault; a CI run drew that once.
    assert last["updates"] >= 150 and abs(ratio - 1) < 0.03, (ratio, last["updates"])
