"""Success as a per-task metric: episodes carry it from the env's info, the summary, TensorBoard,
evals.jsonl and the terminal report it, and tasks without a success condition report null."""
import dataclasses
import json

import gymnasium as gym
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from frontier.agents.model import ModelConfig
from frontier.cli.train import _print_summary
from frontier.distributed.monitor import Monitor
from frontier.distributed.rollout import RolloutWorker
from frontier.envs import registry
from frontier.envs.registry import make_expert

SUCCESS_AFTER = 15  # the test env's episodes succeed once they last this many steps


class SucceedsWhenItLasts(gym.Wrapper):
    """CartPole whose info["success"] turns true at step SUCCESS_AFTER (and false after it)."""

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self.t += 1
        return obs, r, term, trunc, {**info, "success": float(self.t == SUCCESS_AFTER)}


def _task(monkeypatch):
    spec = dataclasses.replace(registry.get_task("CartPole-v1"), name="CartPole-success", success_key="success",
                               env=lambda: SucceedsWhenItLasts(gym.make("CartPole-v1", max_episode_steps=-1)))
    monkeypatch.setitem(registry.all_tasks(), spec.name, spec)
    return spec


def test_rollout_episodes_succeed_when_info_says_so_at_any_step(monkeypatch):
    spec = _task(monkeypatch)
    cfg = ModelConfig(embed_dim=16, n_layers=1, n_heads=2, context_len=4, max_timestep=600)
    episodes = RolloutWorker([spec.name], [spec.name], cfg, "explore", 4, seed=0).collect(400)
    assert episodes
    # info["success"] is true at one step only: "any step", not the last one, decides.
    assert [e.success for e in episodes] == [e.length >= SUCCESS_AFTER for e in episodes]
    assert {e.success for e in episodes} == {True, False}  # both kinds occur, so the check can fail
    plain = RolloutWorker(["CartPole-v1"], ["CartPole-v1"], cfg, "eval", 2, seed=0).evaluate(1)
    assert all(e.success is None for e in plain)


def test_expert_episodes_carry_success(monkeypatch):
    spec = _task(monkeypatch)
    for kind in ("scripted", "filtered"):
        episodes = list(make_expert(spec, kind).episodes(3, seed=0))
        assert [e.success for e in episodes] == [e.length >= SUCCESS_AFTER for e in episodes], kind


def test_summary_tensorboard_and_terminal_report_success_rate(tmp_path, capsys):
    monitor = Monitor(tmp_path, {"A": (0.0, 10.0), "B": (0.0, 10.0)}, live=False)
    monitor.evaluation("A", [1.0, 2.0, 3.0, 4.0], step=100, successes=[True, False, True, True])
    monitor.evaluation("B", [5.0], step=100)
    monitor._last_line = 0.0
    monitor.status("online", 1, 2, 100, 1.0)
    summary = monitor.summary("finished", 100, 1, 1.0, {}, {})
    monitor.close()
    tasks = json.loads((tmp_path / "summary.json").read_text())["tasks"]
    assert tasks["A"]["success_rate"] == 0.75 and tasks["B"]["success_rate"] is None
    assert summary["tasks"]["A"]["success_rate"] == 0.75
    assert "A=0.25 (success 0.75)" in capsys.readouterr().err
    _print_summary(summary)
    printed = capsys.readouterr().out
    assert "success 0.75" in printed and printed.count("success") == 1
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert "success/A" in acc.Tags()["scalars"] and "success/B" not in acc.Tags()["scalars"]
    assert acc.Scalars("success/A")[0].value == 0.75


def test_episode_success_survives_the_replay_shards(tmp_path):
    from frontier.agents.storage import read_episodes, write_episodes
    from frontier.agents.trajectory import Episode

    def ep(success):
        return Episode("A", np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32), np.ones(3, np.float32),
                       False, {"kind": "eval"}, success)

    write_episodes(tmp_path / "s.safetensors", [ep(True), ep(False), ep(None)])
    episodes, _ = read_episodes(tmp_path / "s.safetensors")
    assert [e.success for e in episodes] == [True, False, None]
