"""How `frontier train` finds its Ray: its own embedded instance unless told to attach, even
when another Ray instance runs on the machine (a notebook, a second run, a test suite)."""
import os
import socket
import subprocess
import sys

from frontier.distributed import config as config_mod


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_mode_starts_its_own_ray_beside_a_running_instance(tmp_path, tiny_config):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    subprocess.run([ray_bin, "start", "--head", "--num-cpus=1", f"--port={_free_port()}", "--disable-usage-stats",
                    "--include-dashboard=false"], env=env, check=True, capture_output=True, timeout=120)
    try:
        config_mod.save(tiny_config("train.pretrain_updates=10", "train.online_updates=20", "train.eval_every=30"),
                        tmp_path / "c.yaml")
        out = subprocess.run([sys.executable, "-m", "frontier.cli", "train", str(tmp_path / "c.yaml"),
                              "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
        log = out.stdout + out.stderr
        assert out.returncode == 0, log[-3000:]
        assert "Connecting to existing Ray cluster" not in log
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_a_dead_address_fails_in_one_line_within_seconds(tmp_path, tiny_config):
    import time

    config_mod.save(tiny_config(), tmp_path / "c.yaml")
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "frontier.cli", "train", str(tmp_path / "c.yaml"), "--out",
                          str(tmp_path / "run"), "--address", f"127.0.0.1:{_free_port()}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and time.monotonic() - t < 60, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("frontier train: error: cannot reach the Ray cluster at 127.0.0.1:")
    assert not (tmp_path / "run").exists()
