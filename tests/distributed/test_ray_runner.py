"""The Ray actor-learner on one embedded Ray instance shared by the module: a short run, the
weights the exploration actors use, and a rollout actor killed mid-run."""
import json
import os
import signal
import threading
import time
from functools import partial

import numpy as np
import pytest
import ray
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from frontier.distributed.learner_service import LearnerService
from frontier.distributed.monitor import tag_name
from frontier.distributed.ray_executor import RayExecutor, gcs_actor, sample_from
from frontier.distributed.trainer import Trainer
from frontier.distributed.replay import ReplayStore, read_shards
from frontier.distributed.rollout import collect_expert
from frontier.envs.registry import get_task


pytestmark = pytest.mark.usefixtures("frontier_ray")  # one Ray instance for the module


def test_learner_service_prefetches_trains_publishes_and_checkpoints(tiny_config, tmp_path):
    cfg = tiny_config()
    infos = [get_task(t).info() for t in cfg.tasks]
    replay = ray.remote(max_concurrency=4)(ReplayStore).remote(infos, 10_000, 0.5, cfg.model.context_len)
    for task in cfg.tasks:
        ray.get(replay.add.remote(collect_expert(task, "scripted", 2, 0)[0], offline=True))
    make = ray.remote(LearnerService)
    sample = partial(sample_from, replay)
    service = make.remote(cfg.model, infos, cfg.learner, 0, sample, ray.put, batch_size=8, weights_every=5)
    out = ray.get(service.train.remote(12))
    assert out["updates"] == 12 and out["trained_timesteps"] > 0
    assert np.isfinite(out["metrics"]["loss/total"]) and 0 < out["utilization"] <= 1
    version, (published,) = out["weights"]
    assert version == 10  # the last multiple of weights_every, not the current update
    ray.get(service.save.remote(str(tmp_path)))
    restored = make.remote(cfg.model, infos, cfg.learner, 1, sample, ray.put, batch_size=8, weights_every=5)
    assert ray.get(restored.load.remote(str(tmp_path))) == 12
    version, (current,) = ray.get(restored.weights.remote())
    assert version == 12
    at_10, at_12 = ray.get(published), ray.get(current)
    # A published version is a snapshot: two more updates moved the weights after it.
    assert at_10.keys() == at_12.keys()
    assert any(not torch.equal(at_10[k], at_12[k]) for k in at_10)
    for actor in (service, restored):
        ray.get(actor.stop.remote())


def explore_versions_in_replay(run_dir):
    """Weights version of every exploration episode, in the order the store acknowledged them."""
    versions = []
    for _, episodes, offline in read_shards(run_dir / "replay"):
        if not offline:
            versions += [int(e.source["policy"].split("@")[1]) for e in episodes]
    return versions


def test_short_run_writes_summary_tensorboard_and_replay(tiny_config, tmp_path):
    cfg = tiny_config()
    runner = Trainer(cfg, tmp_path, RayExecutor(), live=False)
    summary = runner.run()
    assert summary["status"] == "finished"
    assert summary["learner_updates"] == cfg.train.pretrain_updates + cfg.train.online_updates
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["compute"]["env_steps_by_source"]["explore"] > 0
    assert summary["compute"]["learner_flops"] > 0 and summary["throughput"]["learner_utilization"] > 0
    for task in cfg.tasks:
        assert summary["tasks"][task]["eval_episodes"] == cfg.train.final_eval_episodes
    assert (tmp_path / "model.safetensors").is_file()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir())[-1] == "ckpt-00000120"

    # TensorBoard's own reader finds an evaluation return for every task of the run.
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for task in cfg.tasks:
        assert f"return/{tag_name(task)}" in tags
        assert f"normalized/{tag_name(task)}" in tags
    assert any(t.startswith("loss/") for t in tags)

    # Every episode the store acknowledged is on disk.
    stats = ray.get(runner.replay.stats())
    on_disk = sum(len(eps) for _, eps, _ in read_shards(tmp_path / "replay"))
    stored = sum(s["added_episodes"] + s["holdout_episodes"] for s in stats.values())  # held out: never trained on
    assert on_disk == stored >= runner.rollouts.acknowledged_episodes > 0


def test_exploration_weights_version_advances(tiny_config, tmp_path):
    # Data-relative return targets: the driver sends them with every rollout call.
    cfg = tiny_config("train.online_updates=200", "train.return_targets=data")
    runner = Trainer(cfg, tmp_path, RayExecutor(), live=False)
    assert runner.run()["status"] == "finished"
    # The actors report the version they collected with; the episodes in replay/ carry it too.
    for i in range(cfg.rollout.explore_workers):
        versions = [v for actor, v in runner.rollouts.explore_versions if actor == i]
        assert versions == sorted(versions), versions  # an actor never goes back to older weights
        assert versions[0] >= cfg.train.pretrain_updates  # pretrained weights, not the random init
        assert versions[-1] > versions[0], versions
    in_replay = explore_versions_in_replay(tmp_path)
    assert len(set(in_replay)) >= 3
    assert all(v % cfg.rollout.weights_every == 0 for v in in_replay)  # only published versions


def _kill_explorer_when_online(runner, pretrain_updates, killed):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runner.rollouts.explorers and runner.state.updates >= pretrain_updates + 20 and runner.rollouts.explore_versions:
            pid = ray.get(runner.rollouts.explorers[0].pid())
            killed["chunks_before"] = len(runner.rollouts.explore_versions)
            killed["updates"] = runner.state.updates
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid
            return
        time.sleep(0.05)


def test_sigkilled_rollout_actor_is_restarted_and_run_completes(tiny_config, tmp_path):
    cfg = tiny_config("train.online_updates=300")
    runner = Trainer(cfg, tmp_path, RayExecutor(), live=False)
    killed = {}
    killer = threading.Thread(target=_kill_explorer_when_online, args=(runner, cfg.train.pretrain_updates, killed))
    killer.start()
    summary = runner.run()
    killer.join()
    assert "pid" in killed, "the run ended before the actor could be killed"
    assert summary["status"] == "finished"
    assert summary["learner_updates"] == cfg.train.pretrain_updates + cfg.train.online_updates
    assert summary["learner_updates"] > killed["updates"]
    assert summary["faults"]["actor_restarts"] == 1  # one death, one restart, however many calls it failed
    # Ray restarted the actor in a new process; a call with the run's last weights reference
    # (as the driver sends with every call) brings it up to date and it collects again.
    assert ray.get(runner.rollouts.explorers[0].pid()) != killed["pid"]
    version, box = runner.rollouts.weights
    out = ray.get(runner.rollouts.explorers[0].collect_into(runner.replay, 20, version, box))
    assert out["weights_version"] == version == summary["learner_updates"]
    assert out["after"]["env_steps"] - out["before"]["env_steps"] >= 20


def _kill_core_actor_when_online(runner, which, after_updates, killed):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runner.rollouts.explorers and runner.state.updates >= after_updates and runner.rollouts.explore_versions:
            actor = runner.learner if which == "learner" else runner.replay
            killed["updates"] = runner.state.updates
            killed["pid"] = gcs_actor(actor.target)["Pid"]
            os.kill(killed["pid"], signal.SIGKILL)
            return
        time.sleep(0.05)


@pytest.mark.parametrize("which", ["learner", "replay"])
def test_sigkilled_learner_or_replay_store_is_rebuilt_and_run_completes(tiny_config, tmp_path, which):
    cfg = tiny_config("train.online_updates=300")
    runner = Trainer(cfg, tmp_path, RayExecutor(), live=False)
    killed = {}
    # After the checkpoint at 100 updates, mid-way through the online phase.
    after = cfg.train.pretrain_updates + 90
    killer = threading.Thread(target=_kill_core_actor_when_online, args=(runner, which, after, killed))
    killer.start()
    summary = runner.run()
    killer.join()
    assert "pid" in killed, "the run ended before the actor could be killed"
    assert summary["status"] == "finished", summary.get("stop_reason")
    assert summary["learner_updates"] == cfg.train.pretrain_updates + cfg.train.online_updates
    assert summary["faults"]["core_restores"] == 1
    # Rolled back to the newest checkpoint at most `checkpoint_every` updates back.
    assert 0 <= summary["faults"]["updates_redone"] < cfg.checkpoint_every
    # The rebuilt store holds every episode in replay/, which holds every acknowledged one.
    stats = ray.get(runner.replay.stats())
    on_disk = sum(len(eps) for _, eps, _ in read_shards(tmp_path / "replay"))
    stored = sum(s["added_episodes"] + s["holdout_episodes"] for s in stats.values())  # held out: never trained on
    assert on_disk == stored >= runner.rollouts.acknowledged_episodes > 0
    # Exploration went on after the rebuild, with the rebuilt learner's weights.
    assert max(v for _, v in runner.rollouts.explore_versions) > killed["updates"]


def _stop_explorer_when_online(runner, pretrain_updates, stopped):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if runner.rollouts.explorers and runner.state.updates >= pretrain_updates + 20 and runner.rollouts.explore_versions:
            stopped["pid"] = ray.get(runner.rollouts.explorers[0].pid())
            os.kill(stopped["pid"], signal.SIGSTOP)  # hung as in C code: no signal handler runs, no reply comes
            return
        time.sleep(0.05)


def test_rollout_actor_hung_past_the_call_timeout_is_killed_and_replaced(tiny_config, tmp_path):
    cfg = tiny_config("train.online_updates=300", "rollout.call_timeout_s=20")
    runner = Trainer(cfg, tmp_path, RayExecutor(), live=False)
    stopped = {}
    watcher = threading.Thread(target=_stop_explorer_when_online, args=(runner, cfg.train.pretrain_updates, stopped))
    watcher.start()
    try:
        summary = runner.run()
    finally:
        watcher.join()
        if "pid" in stopped:
            try:
                os.kill(stopped["pid"], signal.SIGKILL)  # never leave a stopped process behind
            except ProcessLookupError:
                pass
    assert "pid" in stopped, "the run ended before the actor could be stopped"
    assert summary["status"] == "finished"
    assert summary["learner_updates"] == cfg.train.pretrain_updates + cfg.train.online_updates
    assert summary["faults"]["rollout_calls_timed_out"] >= 1
    assert summary["faults"]["actor_restarts"] >= 1
    # Ray replaces the hung process (the restart may still be under way when the run ends).
    deadline = time.monotonic() + 120
    while True:
        try:
            new_pid = ray.get(runner.rollouts.explorers[0].pid(), timeout=30)
            break
        except ray.exceptions.ActorUnavailableError:
            assert time.monotonic() < deadline, "Ray did not restart the killed actor"
            time.sleep(1.0)
    assert new_pid != stopped["pid"]
