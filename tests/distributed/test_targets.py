"""Data-relative return targets (train.return_targets = "data")."""
import pytest

from frontier.distributed.data_stats import data_targets
from frontier.distributed.rollout import RolloutWorker
from frontier.agents.model import ModelConfig
from frontier.envs.spec import TaskSpec


def _spec(name, eval_target, explore_target):
    return TaskSpec(name=name, env="CartPole-v1", suite="test", max_episode_steps=100, eval_target=eval_target, explore_target=explore_target)


def test_data_targets_scale_above_the_best_return_and_cap():
    specs = [_spec("hop", 3234.0, 6469.0), _spec("pend", -160.0, -100.0), _spec("new", 10.0, 20.0),
             _spec("capped", 1000.0, 1000.0)]
    references = {"hop": (20.0, 3234.0), "pend": (-1200.0, -150.0), "new": (0.0, 1.0), "capped": (0.0, 1000.0)}
    stats = {"hop": {"best_return": 940.0}, "pend": {"best_return": -700.0}, "new": {"best_return": None},
             "capped": {"best_return": 990.0}}
    ev = data_targets(specs, references, stats, "eval", "data", 1.15)
    ex = data_targets(specs, references, stats, "explore", "data", 2.3)
    assert ev["hop"] == pytest.approx(20 + 1.15 * 920) and ex["hop"] == pytest.approx(20 + 2.3 * 920)
    assert ev["pend"] == pytest.approx(-1200 + 1.15 * 500) and ex["pend"] == -100.0  # capped at the task's target
    assert "new" not in ev  # no episode stored yet: the task keeps its own target
    assert ev["capped"] == 1000.0 and ex["capped"] == 1000.0


def test_worker_conditions_new_episodes_on_set_targets():
    worker = RolloutWorker(["CartPole-v1"], ["CartPole-v1"], ModelConfig(embed_dim=16, n_layers=1, n_heads=1,
                                                                        context_len=4), "explore", 2, seed=0)
    scale = worker.specs[0].reward_scale
    worker.collect(1)
    assert worker.policy._rtg[0] == pytest.approx(worker.specs[0].explore_target * scale, abs=1.0)
    worker.set_targets({"CartPole-v1": 123.0})
    worker.evaluate(1)
    worker.collect(1)  # after an evaluation, exploration starts fresh episodes
    assert worker.policy._rtg[0] == pytest.approx(123.0 * scale - scale)  # one step's reward of 1 spent


def test_top_targets_follow_the_best_tenth_stored_now_not_the_best_ever():
    from frontier.distributed.replay import ReplayStore
    from tests.distributed.test_replay import TASKS, episode

    store = ReplayStore(TASKS[:1], capacity=400, offline_share=0.5, context_len=5, eviction="odt")
    store.add([episode("vec", 20, r, tag=i) for i, r in enumerate([1.0] * 19 + [5.0])], offline=True)
    stats = store.stats()["vec"]
    assert stats["best_return"] == 100.0
    assert stats["top_return"] == 60.0  # the best 2 of 20 episodes: returns 100 and 20
    store.add([episode("vec", 20, 0.5, tag=100 + i) for i in range(20)])  # 400 steps: the lucky offline episode was the best
    stats = store.stats()["vec"]
    assert stats["best_return"] == 100.0  # ever
    assert stats["top_return"] == 10.0  # the store now holds online episodes of return 10 only
    specs = [_spec("vec", 1000.0, 2000.0)]
    ev_best = data_targets(specs, {"vec": (0.0, 1000.0)}, {"vec": stats}, "eval", "data", 1.15)
    ev_top = data_targets(specs, {"vec": (0.0, 1000.0)}, {"vec": stats}, "eval", "top", 1.15)
    assert ev_best["vec"] == pytest.approx(115.0) and ev_top["vec"] == pytest.approx(11.5)
