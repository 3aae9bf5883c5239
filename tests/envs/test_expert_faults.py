"""Expert collection through a fault boundary: an env that raises or returns NaN costs an attempt."""
import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from frontier.envs.registry import get_task, make_expert


class Faulty(gym.Wrapper):
    """Raises on `raise_rate` of steps and returns a NaN observation on `nan_rate` of them."""

    def __init__(self, env, raise_rate: float, nan_rate: float, seed: int = 0):
        super().__init__(env)
        self.raise_rate, self.nan_rate = raise_rate, nan_rate
        self.rng = np.random.default_rng(seed)

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        u = self.rng.random()
        if u < self.raise_rate:
            raise RuntimeError("injected env failure")
        if u < self.raise_rate + self.nan_rate:
            obs = np.full_like(obs, np.nan)
        return obs, r, term, trunc, info


def _faulty_cartpole(raise_rate, nan_rate):
    builds = iter(range(10_000))  # each rebuilt env gets its own fault stream
    return dataclasses.replace(
        get_task("CartPole-v1"), name="CartPole-faulty",
        env=lambda: Faulty(gym.make("CartPole-v1", max_episode_steps=-1), raise_rate, nan_rate, next(builds)))


@pytest.mark.parametrize("kind", ["scripted", "filtered"])
def test_faulty_attempts_are_dropped_and_replaced(kind):
    source = make_expert(_faulty_cartpole(0.002, 0.002), kind)
    eps = list(source.episodes(6, seed=0))
    assert len(eps) == 6 and source.tally.episodes_dropped > 0
    by_cause = source.tally.dropped_by_cause  # both injected kinds occur, and nothing else
    assert set(by_cause) == {"raised", "non_finite"} and sum(by_cause.values()) == source.tally.episodes_dropped
    assert all(np.all(np.isfinite(e.observations)) for e in eps)
    assert len({e.source["seed"] for e in eps}) == 6


def test_an_env_that_always_fails_is_one_clear_error():
    source = make_expert(_faulty_cartpole(0.0, 1.0), "scripted")
    with pytest.raises(RuntimeError, match="CartPole-faulty: 20 episodes in a row failed in one env, the last with "
                                           "FloatingPointError"):
        list(source.episodes(3, seed=0))


class NanThenCount(gym.Wrapper):
    """Returns a NaN observation at step `at` of every episode and counts the steps taken after it."""

    def __init__(self, env, at: int = 5):
        super().__init__(env)
        self.at, self.t, self.after_nan = at, 0, 0

    def reset(self, **kwargs):
        self.t = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        self.t += 1
        self.after_nan += self.t > self.at
        obs, r, term, trunc, info = self.env.step(action)
        return (np.full_like(obs, np.nan) if self.t == self.at else obs), r, term, trunc, info


def test_an_env_is_not_stepped_past_its_first_non_finite_value():
    envs = []
    spec = dataclasses.replace(get_task("CartPole-v1"), name="CartPole-nan",
                               env=lambda: envs.append(NanThenCount(gym.make("CartPole-v1"))) or envs[-1])
    source = make_expert(spec, "scripted")
    with pytest.raises(RuntimeError, match="20 episodes in a row failed in one env"):
        list(source.episodes(1, seed=0))
    assert source.tally.dropped_by_cause == {"non_finite": 20}
    assert sum(e.after_nan for e in envs) == 0  # a later fault in the same episode would go uncounted
