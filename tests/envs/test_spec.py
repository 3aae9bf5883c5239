import gymnasium as gym
import numpy as np
import pytest

from frontier.agents.spaces import Box, Discrete
from frontier.envs.registry import builtin_tasks, get_task
from frontier.envs.spec import TaskSpec

SPECS = {spec.name: spec for spec in builtin_tasks()}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_builtin_builds_and_info_matches_env(name):
    spec = SPECS[name]
    info = spec.info()  # raises where the declared spaces differ from the env's
    assert spec.info() is info  # cached
    assert spec.listed_spaces() == (info.observation, info.action)
    assert info.name == name and info.reward_scale == spec.reward_scale
    env = spec.make_env(seed=0)
    obs, _ = env.reset(seed=0)
    if isinstance(info.observation, Box):
        assert obs.shape == info.observation.shape
        assert obs.dtype == np.dtype(info.observation.dtype)
    else:
        assert isinstance(info.observation, Discrete)
    if isinstance(info.action, Box):
        assert isinstance(env.action_space, gym.spaces.Box)
        assert env.action_space.shape == info.action.shape
        assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
        action = np.ones(info.action.shape, dtype=np.float32)
    else:
        assert env.action_space.n == info.action.n
        action = info.action.n - 1
    obs, reward, terminated, truncated, _ = env.step(action)
    assert obs.shape == (info.observation.shape if isinstance(info.observation, Box) else ())
    assert np.isfinite(reward)
    env.close()


def test_pixel_atari_is_84x84x4_uint8():
    info = get_task("ALE/Pong-v5").info()
    assert info.observation == Box((84, 84, 4), "uint8")
    assert info.action == Discrete(6)
    assert get_task("ALE/Breakout-v5").info().observation == Box((84, 84, 4), "uint8")
    assert get_task("ALE/Breakout-ram-v5").info().observation == Box((128,), "float32")


def test_time_limit_counts_agent_steps():
    spec = get_task("ALE/Pong-v5")
    short = TaskSpec(spec.name, spec.env, spec.suite, 7, dict(spec.env_kwargs), spec.preprocess)
    env = short.make_env(seed=0)
    env.reset(seed=0)
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(0)
        steps += 1
        done = terminated or truncated
    assert steps == 7 and truncated


def test_actions_are_rescaled_to_unit_box():
    env = get_task("Pendulum-v1").make_env(seed=0)
    env.reset(seed=0)
    env.step(np.array([1.0], dtype=np.float32))
    assert env.unwrapped.last_u == pytest.approx(2.0)  # max torque of Pendulum-v1


def test_make_env_seed_is_deterministic():
    spec = get_task("CartPole-v1")
    a, b, c = spec.make_env(seed=3), spec.make_env(seed=3), spec.make_env(seed=4)
    oa, ob, oc = a.reset()[0], b.reset()[0], c.reset()[0]
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(oa, oc)


def test_bad_spec_values_raise():
    with pytest.raises(ValueError, match="max_episode_steps"):
        TaskSpec("T", "CartPole-v1", "classic", 0)
    with pytest.raises(ValueError, match="reward_scale"):
        TaskSpec("T", "CartPole-v1", "classic", 10, reward_scale=0.0)


def test_specs_pickle_for_worker_processes():
    import pickle

    for name, spec in SPECS.items():
        copy = pickle.loads(pickle.dumps(spec))
        assert copy.name == name and copy.max_episode_steps == spec.max_episode_steps


def test_declared_spaces_that_differ_from_the_env_raise():
    spec = TaskSpec(name="CartPole-wrong", env="CartPole-v1", suite="classic", max_episode_steps=10,
                    spaces=(Box((4,)), Discrete(3)))
    assert spec.listed_spaces() == (Box((4,)), Discrete(3))
    with pytest.raises(ValueError, match=r"declared spaces \('Box\(4,\):float32', 'Discrete\(3\)'\) differ"):
        spec.info()


def test_listing_tasks_builds_no_metaworld_or_atari_env(monkeypatch, capsys):
    # The built-in suites declare their spaces: `frontier tasks` stays fast and prints no ALE banner.
    from frontier.cli import main

    make_env = TaskSpec.make_env

    def guarded(self, seed=None):
        builtin = self.name in SPECS  # a plugin's task without declared spaces is built
        assert not (builtin and self.suite in ("metaworld", "atari")), f"{self.name}: env built to list it"
        return make_env(self, seed)

    monkeypatch.setattr(TaskSpec, "make_env", guarded)
    assert main(["tasks", "--json"]) == 0
    assert '"Meta-World/reach-v3"' in capsys.readouterr().out
