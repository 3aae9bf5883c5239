"""The rollout worker's fault boundary: a broken env ends the call with an error, never a hang."""
import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from agents.model import ModelConfig
from distributed.rollout import RolloutWorker
from envs import registry


class NaNObservations(gym.Wrapper):
    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return np.full_like(obs, np.nan), r, term, trunc, info


@pytest.mark.parametrize("mode", ["eval", "explore"])
def test_an_env_that_always_returns_nan_ends_the_call_with_an_error(monkeypatch, mode):
    spec = dataclasses.replace(registry.get_task("CartPole-v1"), name="CartPole-nan",
                               env=lambda: NaNObservations(gym.make("CartPole-v1", max_episode_steps=-1)))
    monkeypatch.setitem(registry.all_tasks(), "CartPole-nan", spec)
    cfg = ModelConfig(embed_dim=16, n_layers=1, n_heads=2, context_len=4, max_timestep=600)
    worker = RolloutWorker(["CartPole-nan"], ["CartPole-nan"], cfg, mode, 2, seed=0)
    with pytest.raises(RuntimeError, match="CartPole-nan: 20 episodes in a row failed in one env"):
        worker.evaluate(2) if mode == "eval" else worker.collect(100)
    assert worker.episodes_dropped >= 19
