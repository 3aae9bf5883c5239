"""EnvPool: the one env loop and fault boundary under the rollout worker and every expert source."""
import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from frontier.envs.env_pool import EnvPool, Tally
from frontier.envs.registry import get_task


def _run_episode(pool, i, reset_seed=None):
    pool.begin(i, reset_seed=reset_seed)
    while True:
        _, _, finished, failed = pool.step([i], [pool.env(i).action_space.sample()])
        if finished or failed:
            return finished[0][1] if finished else None


def test_episodes_are_named_by_build_seed_and_index_or_by_their_reset_seed():
    specs = [get_task("CartPole-v1"), get_task("Pendulum-v1")]
    pool = EnvPool(specs, [0, 1], seed_base=100)
    a, b = _run_episode(pool, 0), _run_episode(pool, 0)
    assert (a.source, b.source) == ({"seed": 101, "episode": 0}, {"seed": 101, "episode": 1})
    c = _run_episode(pool, 1)
    assert c.task == "Pendulum-v1" and c.source == {"seed": 102, "episode": 0} and len(c.rewards) == 200
    assert c.observations.dtype == np.float32 and c.actions.shape == (200, 1)
    again = EnvPool(specs, [0, 1], seed_base=None)
    x, y = _run_episode(again, 0, reset_seed=7), _run_episode(again, 0, reset_seed=7)
    assert x.source == {"seed": 7} and np.array_equal(x.actions, y.actions) and np.array_equal(x.rewards, y.rewards)
    assert pool.tally.env_steps == len(a.rewards) + len(b.rewards) + 200


class RaisesEveryOtherEpisode(gym.Wrapper):
    """Over all instances, every second unseeded reset (an episode, not a build) raises at step 3."""

    episodes = 0

    def reset(self, **kw):
        RaisesEveryOtherEpisode.episodes += kw.get("seed") is None
        self.bad, self.t = kw.get("seed") is None and RaisesEveryOtherEpisode.episodes % 2 == 0, 0
        return self.env.reset(**kw)

    def step(self, action):
        self.t += 1
        if self.bad and self.t == 3:
            raise RuntimeError("fault")
        return self.env.step(action)


def test_a_failed_episode_is_counted_in_the_callers_tally_and_the_env_rebuilt(monkeypatch):
    monkeypatch.setattr(RaisesEveryOtherEpisode, "episodes", 0)
    spec = dataclasses.replace(get_task("CartPole-v1"), name="CartPole-flaky",
                               env=lambda: RaisesEveryOtherEpisode(gym.make("CartPole-v1", max_episode_steps=-1)))
    tally = Tally(env_steps=10)
    pool = EnvPool([spec], [0], seed_base=0, tally=tally)
    first = pool.env(0)
    got = [_run_episode(pool, 0) for _ in range(4)]
    assert [g is None for g in got] == [False, True, False, True]
    assert tally.episodes_dropped == 2 and tally.dropped_by_cause == {"raised": 2}
    assert pool.env(0) is not first and got[2].source == {"seed": 2, "episode": 0}  # the rebuilt env's own seed
    assert tally.env_steps == 10 + len(got[0].rewards) + len(got[2].rewards) + 2 * 3  # the failed steps count too


def test_a_broken_env_is_one_clear_error_not_a_loop():
    spec = dataclasses.replace(get_task("CartPole-v1"), name="CartPole-broken",
                               env=lambda: (_ for _ in ()).throw(OSError("no display")))
    with pytest.raises(RuntimeError, match="CartPole-broken: 20 envs in a row failed to build, the last with OSError"):
        EnvPool([spec], [0], seed_base=0)


class FailsSeededResets(gym.Wrapper):
    """A reset with an odd seed raises (deterministically: that seed always fails)."""

    def reset(self, *, seed=None, options=None):
        if seed is not None and seed % 2:
            raise RuntimeError("bad seed")
        return self.env.reset(seed=seed, options=options)


def test_a_seeded_reset_that_fails_returns_none_so_the_caller_takes_another_seed():
    # Retrying the same seed on the rebuilt env would fail the same way 20 times in a row.
    spec = dataclasses.replace(get_task("CartPole-v1"), name="CartPole-badseed",
                               env=lambda: FailsSeededResets(gym.make("CartPole-v1", max_episode_steps=-1)))
    pool = EnvPool([spec], [0], seed_base=None)
    assert pool.begin(0, reset_seed=3) is None and pool.tally.dropped_by_cause == {"raised": 1}
    assert pool.begin(0, reset_seed=4) is not None and pool.current(0) is not None
