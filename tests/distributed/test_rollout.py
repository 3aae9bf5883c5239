"""The rollout worker: its fault boundary drops and counts an episode an env fails, and a broken env
ends the call with an error, never a hang."""
import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from frontier.agents.model import ModelConfig
from frontier.distributed.rollout import RolloutWorker
from frontier.envs import registry


class NaNObservations(gym.Wrapper):
    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return np.full_like(obs, np.nan), r, term, trunc, info


class FailsEveryThirdEpisode(gym.Wrapper):
    """Counting episodes over every instance (a failed env is rebuilt): at step 5, episode 3k
    raises and episode 3k + 1 returns a NaN observation."""

    episodes = 0

    def reset(self, **kw):
        FailsEveryThirdEpisode.episodes += 1
        self.episode, self.t = FailsEveryThirdEpisode.episodes, 0
        return self.env.reset(**kw)

    def step(self, action):
        self.t += 1
        obs, r, term, trunc, info = self.env.step(action)
        if self.t == 5 and self.episode % 3 == 0:
            raise RuntimeError("simulator fault")
        if self.t == 5 and self.episode % 3 == 1 and self.episode > 1:
            obs = np.full_like(obs, np.nan)
        return obs, r, term, trunc, info


def _worker(monkeypatch, name, wrapper, mode, envs):
    spec = dataclasses.replace(registry.get_task("CartPole-v1"), name=name,
                               env=lambda: wrapper(gym.make("CartPole-v1", max_episode_steps=-1)))
    monkeypatch.setitem(registry.all_tasks(), name, spec)
    cfg = ModelConfig(embed_dim=16, n_layers=1, n_heads=2, context_len=4, max_timestep=600)
    return RolloutWorker([name], [name], cfg, mode, envs, seed=0)


@pytest.mark.parametrize("mode", ["eval", "explore"])
def test_a_failed_episode_is_dropped_and_counted_by_cause_and_the_call_goes_on(monkeypatch, mode):
    monkeypatch.setattr(FailsEveryThirdEpisode, "episodes", 0)
    worker = _worker(monkeypatch, "CartPole-flaky", FailsEveryThirdEpisode, mode, 2)
    episodes = worker.evaluate(6) if mode == "eval" else worker.collect(600)
    assert len(episodes) >= 6 and all(np.all(np.isfinite(e.observations)) for e in episodes)
    causes = worker.counters()["dropped_by_cause"]
    assert causes.get("raised", 0) >= 1 and causes.get("non_finite", 0) >= 1
    assert worker.tally.episodes_dropped == sum(causes.values())


@pytest.mark.parametrize("mode", ["eval", "explore"])
def test_an_env_that_always_returns_nan_ends_the_call_with_an_error(monkeypatch, mode):
    worker = _worker(monkeypatch, "CartPole-nan", NaNObservations, mode, 2)
    with pytest.raises(RuntimeError, match="CartPole-nan: 20 episodes in a row failed in one env"):
        worker.evaluate(2) if mode == "eval" else worker.collect(100)
    assert worker.tally.episodes_dropped >= 19


class FailsAtStepFive(gym.Wrapper):
    """Every episode raises at its fifth step: no episode ever finishes."""

    def reset(self, **kw):
        self.t = 0
        return self.env.reset(**kw)

    def step(self, action):
        self.t += 1
        if self.t == 5:
            raise RuntimeError("simulator fault")
        return self.env.step(action)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["eval", "explore"])
def test_an_env_that_fails_every_episode_midway_ends_the_call_with_an_error(monkeypatch, mode):
    # The count runs from the env's last FINISHED episode: counting from its last good step, an
    # evaluation on this env looped forever (four good steps between faults reset the count).
    worker = _worker(monkeypatch, "CartPole-midway", FailsAtStepFive, mode, 2)
    with pytest.raises(RuntimeError, match="CartPole-midway: 20 episodes in a row failed in one env"):
        worker.evaluate(2) if mode == "eval" else worker.collect(10_000)
    assert worker.counters()["dropped_by_cause"] == {"raised": worker.tally.episodes_dropped}
