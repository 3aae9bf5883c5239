"""Crash injection (RLlib's CartPoleCrashing standard): envs that raise, return NaN or hang, in
expert collection, exploration and evaluation, cost their episodes and never the run."""
import dataclasses
import json
import time
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest

from frontier.agents.model import ModelConfig
from frontier.distributed import config
from frontier.distributed.local_executor import LocalExecutor
from frontier.distributed.trainer import Trainer
from frontier.distributed.replay import read_shards
from frontier.distributed.rollout import RolloutWorker
from frontier.envs import registry

# Faults CrashingEnv injected in this process, by kind, so a test can check the run counted each.
INJECTED: Counter = Counter()
HANG_S = 3600.0  # a hung step sleeps this long: only the step deadline ends it


class CrashingEnv(gym.Wrapper):
    """Per step: raises with p_raise, returns a NaN observation with p_nan, hangs with p_hang;
    per reset: raises with p_reset_raise. Its fault stream is seeded by reset(seed=...)."""

    def __init__(self, env: gym.Env, p_raise: float, p_nan: float, p_hang: float, p_reset_raise: float):
        super().__init__(env)
        self.p = (p_raise, p_nan, p_hang)
        self.p_reset_raise = p_reset_raise
        self.rng = np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed + 10_007)
        if self.rng.random() < self.p_reset_raise:
            INJECTED["reset_raise"] += 1
            raise RuntimeError("injected reset failure")
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        u = self.rng.random()
        p_raise, p_nan, p_hang = self.p
        if u < p_raise:
            INJECTED["raise"] += 1
            raise RuntimeError("injected step failure")
        obs, r, term, trunc, info = self.env.step(action)
        if u < p_raise + p_nan:
            INJECTED["nan"] += 1
            return np.full_like(obs, np.nan), r, term, trunc, info
        if u < p_raise + p_nan + p_hang:
            INJECTED["hang"] += 1
            time.sleep(HANG_S)
        return obs, r, term, trunc, info


def crashing_spec(name: str = "CartPole-crashing", step_timeout_s: float = 0.2, **rates: float):
    """CartPole-v1's TaskSpec (experts, targets, references) on a CrashingEnv with `rates`."""
    base = registry.get_task("CartPole-v1")
    rates = {"p_raise": 0.0, "p_nan": 0.0, "p_hang": 0.0, "p_reset_raise": 0.0, **rates}
    return dataclasses.replace(
        base, name=name, step_timeout_s=step_timeout_s,
        env=lambda: CrashingEnv(gym.make("CartPole-v1", max_episode_steps=-1), **rates))


MODEL = ModelConfig(embed_dim=16, n_layers=1, n_heads=2, context_len=4, max_timestep=600)


@pytest.fixture
def crashing(monkeypatch):
    """`crashing(**rates)`: registers a CrashingEnv task in this process and returns its name."""
    def register(**rates):
        spec = crashing_spec(**rates)
        monkeypatch.setitem(registry.all_tasks(), spec.name, spec)
        return spec.name
    INJECTED.clear()
    return register


def test_a_hung_step_costs_its_episode_not_the_call(crashing):
    name = crashing(p_hang=0.05, step_timeout_s=0.1)
    worker = RolloutWorker([name], [name], MODEL, "eval", 2, seed=0)
    start = time.monotonic()
    episodes = worker.evaluate(5)
    assert len(episodes) == 5
    assert INJECTED["hang"] >= 1 and worker.tally.episodes_dropped == INJECTED["hang"]
    assert worker.counters()["dropped_by_cause"] == {"hung": INJECTED["hang"]}
    assert time.monotonic() - start < 60  # each hang cost its 0.1 s deadline, not HANG_S


def test_a_reset_that_raises_is_dropped_and_counted(crashing):
    name = crashing(p_reset_raise=0.3)
    worker = RolloutWorker([name], [name], MODEL, "explore", 2, seed=0)
    worker.collect(300)
    assert INJECTED["reset_raise"] >= 1 and worker.tally.episodes_dropped == INJECTED["reset_raise"]
    assert worker.counters()["dropped_by_cause"] == {"raised": INJECTED["reset_raise"]}


def test_a_run_on_crashing_envs_still_learns_counts_every_fault_and_stores_no_nan(crashing, tmp_path):
    # About 2x RLlib's per-step crash rate and 10x its per-reset one, plus NaN and hangs, in
    # expert collection, exploration and evaluation alike (all in this process, so INJECTED
    # sees every fault the run met).
    name = crashing(p_raise=1e-3, p_nan=5e-4, p_hang=3e-4, p_reset_raise=0.05)
    cfg = config.from_dict({
        "tasks": [name], "seed": 0, "experts": {"episodes": 8},
        "model": {"embed_dim": 32, "n_layers": 1, "n_heads": 2, "context_len": 10, "dropout": 0.0},
        "learner": {"lr": 0.001, "warmup_updates": 20},
        "train": {"batch_size": 32, "pretrain_updates": 300, "online_updates": 50, "updates_per_round": 25,
                  "explore_steps_per_round": 500, "eval_every": 150, "eval_episodes": 2, "final_eval_episodes": 5},
        "rollout": {"envs_per_worker": 2},
        "checkpoint_every": 100,
    })
    summary = Trainer(cfg, tmp_path, LocalExecutor(), live=False).run()
    assert summary["status"] == "finished"
    assert summary["tasks"][name]["normalized_score"] >= 0.9, summary["tasks"]
    assert all(INJECTED[kind] >= 1 for kind in ("raise", "nan", "hang", "reset_raise")), INJECTED
    assert summary["faults"]["episodes_dropped"] == sum(INJECTED.values()), (summary["faults"], INJECTED)
    assert summary["faults"]["episodes_dropped_by_cause"] == {
        "raised": INJECTED["raise"] + INJECTED["reset_raise"], "non_finite": INJECTED["nan"], "hung": INJECTED["hang"]}
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["faults"] == summary["faults"]
    episodes = [ep for _, eps, _ in read_shards(tmp_path / "replay") for ep in eps]
    assert episodes and all(np.isfinite(ep.observations).all() and np.isfinite(ep.rewards).all() for ep in episodes)
