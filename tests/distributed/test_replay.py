"""ReplayStore: FIFO eviction, reserved expert share, task-balanced sampling, exact restore from disk."""
import numpy as np
import pytest

from frontier.agents.spaces import Box, Discrete, TaskInfo
from frontier.agents.trajectory import Episode
from frontier.distributed.replay import ReplayStore, nll_weights, read_shards

TASKS = [TaskInfo("vec", Box((3,)), Box((2,)), reward_scale=0.1), TaskInfo("disc", Box((4,)), Discrete(3))]


def episode(task, T, ret_per_step=1.0, tag=0):
    rng = np.random.default_rng(tag)
    if task == "vec":
        obs, act = rng.normal(size=(T, 3)).astype(np.float32), rng.uniform(-1, 1, (T, 2)).astype(np.float32)
    else:
        obs, act = rng.normal(size=(T, 4)).astype(np.float32), rng.integers(0, 3, T).astype(np.int64)
    return Episode(task, obs, act, np.full(T, ret_per_step, np.float32), True, {"kind": "test", "policy": "p", "seed": tag})


def test_online_fifo_and_offline_best_kept():
    store = ReplayStore(TASKS, capacity=100, offline_share=0.5, context_len=5)
    store.add([episode("vec", 20, r, tag=i) for i, r in enumerate([1.0, 3.0, 2.0, 0.5])], offline=True)
    # 80 offline steps > 50 reserved: the two worst (returns 20 and 10) go.
    assert sorted(e.ret for e in store.episodes("vec")) == [40.0, 60.0]
    store.add([episode("vec", 20, tag=10 + i) for i in range(4)])
    eps = store.episodes("vec")
    assert store.stats()["vec"]["timesteps"] <= 100
    online_seeds = [e.source["seed"] for e in eps if e.ret == 20.0]
    assert online_seeds == [11, 12, 13]  # the oldest online episode was evicted first
    assert store.stats()["vec"]["evicted_episodes"] == 3
    assert store.stats()["vec"]["best_return"] == 60.0  # of every episode stored, evicted ones too
    assert store.stats()["disc"]["best_return"] is None


def test_task_balanced_sampling_and_weights():
    store = ReplayStore(TASKS, 10_000, 0.5, context_len=5, task_weights={"vec": 3.0, "disc": 1.0}, seed=1)
    store.add([episode("vec", 50, tag=1)])
    store.add([episode("disc", 500, tag=2)])  # 10x more data must not mean 10x more samples
    counts = np.zeros(2)
    for _ in range(50):
        b = store.sample(64)
        counts += np.bincount(b.task, minlength=2)
        assert np.all(np.diff(b.task) >= 0)
    share = counts[0] / counts.sum()
    assert 0.70 < share < 0.80  # weights 3:1


def test_nll_weights_spread_a_floor_evenly_and_the_rest_by_a_softmax_of_the_nll():
    # b's NLL is one temperature above a's: e times a's share of the rest; c's far below.
    shares = nll_weights({"a": -6.0, "b": -4.0, "c": -40.0}, ["a", "b", "c"], floor=0.3, temperature=2.0)
    e = np.e
    assert shares == pytest.approx({"a": 0.1 + 0.7 / (1 + e), "b": 0.1 + 0.7 * e / (1 + e), "c": 0.1}, abs=1e-6)
    assert sum(shares.values()) == pytest.approx(1.0)
    # A task without held-out data counts with the mean NLL; equal NLLs share evenly.
    assert nll_weights({"a": -3.0}, ["a", "b"], floor=0.0, temperature=1.0) == pytest.approx({"a": 0.5, "b": 0.5})
    assert nll_weights({"a": 1.0, "b": 1.0}, ["a", "b"], floor=0.2, temperature=1.0) == pytest.approx({"a": 0.5, "b": 0.5})


def test_set_task_weights_changes_the_batch_shares():
    store = ReplayStore(TASKS, 10_000, 0.5, context_len=5, seed=3)
    store.add([episode("vec", 50, tag=1), episode("disc", 50, tag=2)])
    store.set_task_weights({"vec": 0.9, "disc": 0.1})
    counts = sum(np.bincount(store.sample(64).task, minlength=2) for _ in range(50))
    assert 0.85 < counts[0] / counts.sum() < 0.95
    assert store.stats()["disc"]["sampling_weight"] == 0.1


def test_sample_relabels_returns_to_go():
    store = ReplayStore(TASKS[:1], 1000, 0.5, context_len=4, seed=0)
    store.add([episode("vec", 6, ret_per_step=2.0)])
    b = store.sample(32)
    for row in range(b.size):
        t0 = b.timesteps[row, 0]
        n = int(b.mask[row].sum())
        expected = 0.1 * 2.0 * (6 - (t0 + np.arange(n)))
        np.testing.assert_allclose(b.returns_to_go[row, :n], expected, rtol=1e-6)


def test_persist_and_restore_exactly(tmp_path):
    a = ReplayStore(TASKS, capacity=60, offline_share=0.5, context_len=5, directory=tmp_path)
    a.add([episode("vec", 20, r, tag=i) for i, r in enumerate([1.0, 2.0])], offline=True)
    for i in range(5):
        a.add([episode("vec", 15, tag=100 + i), episode("disc", 7, tag=200 + i)])
    b = ReplayStore(TASKS, capacity=60, offline_share=0.5, context_len=5, directory=tmp_path)
    assert b.restore() == (12, 0)
    assert a.stats() == b.stats()
    for task in ("vec", "disc"):
        for x, y in zip(a.episodes(task), b.episodes(task)):
            np.testing.assert_array_equal(x.observations, y.observations)
            np.testing.assert_array_equal(x.actions, y.actions)
            assert x.source == y.source and x.actions.dtype == y.actions.dtype
    # New writes after a restore continue the shard sequence.
    b.add([episode("disc", 3, tag=999)])
    assert len(list(read_shards(tmp_path))) == 7


def test_corrupt_shard_is_quarantined_or_with_strict_named(tmp_path, capsys):
    a = ReplayStore(TASKS, 100, 0.5, 5, directory=tmp_path)
    for i in range(3):
        a.add([episode("vec", 5, tag=i)])
    shard = sorted(tmp_path.glob("shard-*.npz"))[1]
    shard.write_bytes(shard.read_bytes()[:40])
    with pytest.raises(ValueError, match=shard.name):  # the file is named
        ReplayStore(TASKS, 100, 0.5, 5, directory=tmp_path).restore(strict=True)
    b = ReplayStore(TASKS, 100, 0.5, 5, directory=tmp_path)
    assert b.restore() == (2, 1)  # the two good shards; the bad one moved aside
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and shard.name in err[0] and "its episodes are lost" in err[0]
    assert not shard.exists() and (tmp_path / "quarantine" / shard.name).is_file()
    b.add([episode("vec", 5, tag=9)])  # the sequence goes on past every shard seen
    assert sorted(p.name for p in tmp_path.glob("shard-*.npz"))[-1] == "shard-00000003.npz"


def test_unknown_task_rejected():
    with pytest.raises(KeyError, match="nope"):
        ReplayStore(TASKS, 100, 0.5, 5).add([episode("vec", 3).__class__("nope", np.zeros((1, 3)), np.zeros((1, 2)),
                                                                      np.zeros(1), True)])


def test_odt_eviction_replaces_the_worst_offline_episodes_first_then_fifo():
    store = ReplayStore(TASKS[:1], capacity=100, offline_share=0.5, context_len=5, eviction="odt")
    store.add([episode("vec", 20, r, tag=i) for i, r in enumerate([1.0, 3.0, 2.0, 0.5, 4.0, 6.0])], offline=True)
    # 120 offline steps > 100: only the worst (0.5 per step) goes; no share is reserved online.
    assert sorted(e.ret for e in store.episodes("vec")) == [20.0, 40.0, 60.0, 80.0, 120.0]
    store.add([episode("vec", 20, 0.1, tag=10 + i) for i in range(3)])
    # Each online episode replaced the worst offline one, although it returns less than all of them.
    assert sorted(e.ret for e in store.episodes("vec") if e.source["seed"] < 10) == [80.0, 120.0]
    store.add([episode("vec", 20, 0.1, tag=20 + i) for i in range(4)])
    eps = store.episodes("vec")
    assert all(e.source["seed"] >= 10 for e in eps)  # offline data is gone entirely
    assert [e.source["seed"] for e in eps] == [12, 20, 21, 22, 23]  # then first-in first-out
    assert store.stats()["vec"]["timesteps"] == 100


def test_unknown_eviction_rule_is_refused():
    with pytest.raises(ValueError, match="eviction"):
        ReplayStore(TASKS, 100, 0.5, 5, eviction="lru")


def test_holdout_keeps_the_first_episode_and_holds_one_in_every_ten(tmp_path):
    store = ReplayStore(TASKS, 100_000, 0.5, context_len=5, directory=tmp_path, holdout_share=0.1)
    store.add([episode("vec", 12, tag=i) for i in range(20)], offline=True)
    store.add([episode("disc", 7, tag=100)], offline=True)  # one episode: kept for training
    held = store.buffers[0].holdout
    assert [e.source["seed"] for e in held] == [1, 11]  # the 2nd and the 12th of 20
    assert store.stats()["vec"]["holdout_episodes"] == 2 and store.stats()["vec"]["episodes"] == 18
    assert store.stats()["disc"]["holdout_episodes"] == 0 and store.stats()["disc"]["episodes"] == 1
    store.add([episode("vec", 12, tag=50)])  # online episodes are never held out
    assert store.stats()["vec"]["holdout_episodes"] == 2
    sampled = {id(e) for e in store.episodes("vec")}
    assert not sampled & {id(e) for e in held}
    # Replaying the shards holds out the same episodes.
    again = ReplayStore(TASKS, 100_000, 0.5, context_len=5, directory=tmp_path, holdout_share=0.1)
    again.restore()
    assert [e.source["seed"] for e in again.buffers[0].holdout] == [1, 11]


def test_holdout_batch_covers_each_step_once_and_is_capped():
    store = ReplayStore(TASKS, 100_000, 0.5, context_len=5, holdout_share=0.5)
    assert store.holdout() is None
    store.add([episode("vec", 12, tag=i) for i in range(2)], offline=True)
    batch = store.holdout()
    assert batch.size == 3 and batch.mask.sum() == 12  # windows at steps 0, 5, 10 of the held-out episode
    assert batch.timesteps[:, 0].tolist() == [0, 5, 10]
    assert batch.returns_to_go[0, 0] == pytest.approx(0.1 * 12)  # relabelled and scaled as in sample
    store.add([episode("disc", 1000, tag=i) for i in range(2)], offline=True)
    assert (store.holdout().task == 1).sum() == 64  # HOLDOUT_WINDOWS evenly spaced of 200
    with pytest.raises(ValueError, match="holdout share"):
        ReplayStore(TASKS, 100, 0.5, context_len=5, holdout_share=1.0)
