"""The Meta-World suite: spaces, seeded goals, scripted experts, success."""
import numpy as np

from frontier.envs.registry import get_task, make_expert
from frontier.envs.experts.base import FilteredExpert
from frontier.envs.suites.metaworld import MT10, MT50, PREFIX



def test_mt10_is_part_of_mt50_and_every_task_is_registered():
    assert len(MT10) == 10 and len(MT50) == 50 and set(MT10) <= set(MT50)
    for name in MT50:
        spec = get_task(PREFIX + name)
        assert spec.suite == "metaworld" and spec.success_key == "success" and spec.max_episode_steps == 500
        assert {"scripted", "filtered"} <= set(spec.experts)


def test_mt10_tasks_share_one_arm_s_spaces_and_declare_their_goal_bounds():
    infos = set()
    for name in MT10:
        spec = get_task(PREFIX + name)
        env = spec.make_env(seed=3)
        obs, _ = env.reset()
        assert env.observation_space.contains(obs)  # the raw env bounds the goal to 0: it would not
        infos.add((spec.info().observation, spec.info().action))
        env.close()
    assert len(infos) == 1
    obs_space, act_space = infos.pop()
    assert obs_space.shape == (39,) and act_space.shape == (4,)


def test_an_env_seed_names_its_goals():
    spec = get_task(PREFIX + "reach-v3")

    def goals(seed):
        env = spec.make_env(seed=seed)
        out = []
        for _ in range(3):
            out.append(env.reset()[0][-3:].copy())
        env.close()
        return np.array(out)

    np.testing.assert_array_equal(goals(7), goals(7))
    assert not np.array_equal(goals(7), goals(8))


def test_scripted_experts_succeed_where_random_attempts_fail():
    for name in ("reach-v3", "drawer-open-v3"):
        spec = get_task(PREFIX + name)
        scripted = list(make_expert(spec, "scripted").episodes(2, seed=2000))
        random = list(FilteredExpert(spec, keep_fraction=1.0, pool_size=2).episodes(2, seed=2000))
        assert all(e.success for e in scripted) and not any(e.success for e in random), name
        assert min(e.ret for e in scripted) > max(e.ret for e in random), name
        assert all(e.length == 500 and e.observations.dtype == np.float32 for e in scripted + random)


def test_the_example_plugin_adds_a_meta_world_task():
    spec = get_task("Meta-World/reach-v3-150")  # examples/frontier-plugin-example, installed by `make test`
    (episode,) = make_expert(spec, "scripted").episodes(1, seed=2000)
    assert episode.length == 150 and episode.success
