"""`frontier train` (Ray) killed mid-run, then `frontier train --resume`: the update counter
continues from the last checkpoint and the replay store keeps every acknowledged episode."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from frontier.distributed.replay import read_shards
from tests.conftest import TINY


def frontier(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "frontier.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw)


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid`: the driver, its embedded Ray and Ray's workers
    (which sit in process groups of their own), as a machine crash would."""
    def members():
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # fields: state, ppid, pgrp, session, ...
                yield int(stat.parent.name)

    deadline = time.monotonic() + 30
    while (alive := list(members())) and time.monotonic() < deadline:
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    assert not alive, f"processes {alive} of the killed run survived"


def shard_digests(run_dir):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((run_dir / "replay").glob("*.npz"))}


def latest_checkpoint_updates(run_dir):
    ckpts = sorted((run_dir / "checkpoints").glob("ckpt-*"))
    return json.loads((ckpts[-1] / "run_state.json").read_text())["updates"] if ckpts else 0


def test_killed_run_resumes_from_checkpoint_with_its_replay(tmp_path):
    cfg = dict(TINY, checkpoint_every=20)
    cfg["train"] = dict(TINY["train"], online_updates=2000)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    first = frontier("train", str(tmp_path / "c.yaml"), "--out", str(run_dir))
    # Kill the run (driver, embedded Ray, actors) once online training has checkpointed and
    # exploration episodes are in replay/.
    deadline = time.monotonic() + 150
    try:
        while latest_checkpoint_updates(run_dir) < 60 or len(shard_digests(run_dir)) < 4:
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "run never reached its first online checkpoint"
            time.sleep(0.2)
    finally:
        kill_session(first.pid)
        first.wait()
    assert not (run_dir / "model.safetensors").exists()  # it really was stopped mid-run
    ckpt_updates = latest_checkpoint_updates(run_dir)
    before = shard_digests(run_dir)
    acknowledged = sum(len(eps) for _, eps, _ in read_shards(run_dir / "replay"))

    resumed = frontier("train", "--resume", str(run_dir), "--set", "train.online_updates=400")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out
    # The learner and the store came back where they were: the checkpoint's update count, every shard.
    assert f"resumed {run_dir}: {ckpt_updates} updates, {acknowledged} episodes restored" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["learner_updates"] == TINY["train"]["pretrain_updates"] + 400
    after = shard_digests(run_dir)
    assert all(after[name] == digest for name, digest in before.items())  # old shards untouched
    assert len(after) > len(before)  # the resumed run appended its own
    assert summary["compute"]["env_steps_by_source"]["scripted"] > 0  # experts counted once, not lost
    assert len(list((run_dir / "tb").glob("events.*"))) >= 1
