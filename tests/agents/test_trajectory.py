import numpy as np
import pytest

from frontier.agents.spaces import Box, Discrete, TaskInfo
from frontier.agents.trajectory import Episode, make_batch, returns_to_go, sample_windows


def test_returns_to_go_hand_computed():
    rtg = returns_to_go(np.array([1.0, 2.0, 3.0, -1.0], dtype=np.float32), scale=0.5)
    assert rtg.dtype == np.float32
    np.testing.assert_allclose(rtg, [2.5, 2.0, 1.0, -0.5])


def test_returns_to_go_rejects_2d():
    with pytest.raises(ValueError, match="1-D"):
        returns_to_go(np.zeros((2, 2)), 1.0)


def _tasks():
    return [
        TaskInfo("a", Box((2,)), Box((1,)), reward_scale=0.1),
        TaskInfo("b", Discrete(4), Discrete(3), reward_scale=2.0),
    ]


def _episodes():
    ep_a = Episode(
        "a",
        observations=np.arange(10, dtype=np.float32).reshape(5, 2),
        actions=np.linspace(-1, 1, 5, dtype=np.float32).reshape(5, 1),
        rewards=np.array([1, 2, 3, 4, 5], dtype=np.float32),
        terminated=True,
    )
    ep_b = Episode(
        "b",
        observations=np.array([3, 1, 2], dtype=np.int64),
        actions=np.array([2, 0, 1], dtype=np.int64),
        rewards=np.array([1, 0, 1], dtype=np.float32),
        terminated=False,
    )
    return ep_a, ep_b


def test_make_batch_padding_scaling_and_sorting():
    ep_a, ep_b = _episodes()
    # Input order b, a, a: rows must come out sorted by task index (a=0 first), stable.
    batch = make_batch([ep_b, ep_a, ep_a], starts=[1, 3, 0], context_len=4, tasks=_tasks())
    np.testing.assert_array_equal(batch.task, [0, 0, 1])
    # Row 0: ep_a from step 3 -> steps 3, 4 real, then 2 padded.
    np.testing.assert_array_equal(batch.mask, [[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    np.testing.assert_array_equal(batch.timesteps, [[3, 4, 0, 0], [0, 1, 2, 3], [1, 2, 0, 0]])
    np.testing.assert_allclose(batch.returns_to_go[0], [0.9, 0.5, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(batch.returns_to_go[1], [1.5, 1.4, 1.2, 0.9], rtol=1e-6)
    np.testing.assert_allclose(batch.returns_to_go[2], [2.0, 2.0, 0, 0])  # (0 + 1) * 2, 1 * 2
    obs_a = batch.observations[0]
    assert obs_a.shape == (2, 4, 2) and obs_a.dtype == np.float32
    np.testing.assert_array_equal(obs_a[0], [[6, 7], [8, 9], [0, 0], [0, 0]])
    np.testing.assert_array_equal(obs_a[1], ep_a.observations[:4])
    assert batch.actions[0].shape == (2, 4, 1) and batch.actions[0].dtype == np.float32
    np.testing.assert_array_equal(batch.actions[0][0, :2, 0], ep_a.actions[3:, 0])
    # Rewards scaled like the returns-to-go; a terminal flag only where a window reaches the end of
    # an episode that terminated (row 0), not where it stops short (row 1) or the episode was truncated (row 2).
    np.testing.assert_allclose(batch.rewards, [[0.4, 0.5, 0, 0], [0.1, 0.2, 0.3, 0.4], [0, 2.0, 0, 0]], rtol=1e-6)
    np.testing.assert_array_equal(batch.terminals, [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(batch.observations[1], [[1, 2, 0, 0]])
    np.testing.assert_array_equal(batch.actions[1], [[0, 1, 0, 0]])
    assert batch.actions[1].dtype == np.int64
    np.testing.assert_array_equal(batch.rows(1), [2])


def test_make_batch_relabels_after_rewards_change():
    ep_a, _ = _episodes()
    before = make_batch([ep_a], [2], 3, _tasks()).returns_to_go.copy()
    ep_a.rewards[4] = 100.0  # a later reward changes every earlier return-to-go
    after = make_batch([ep_a], [2], 3, _tasks()).returns_to_go
    np.testing.assert_allclose(before[0], [1.2, 0.9, 0.5], rtol=1e-6)
    np.testing.assert_allclose(after[0], [10.7, 10.4, 10.0], rtol=1e-6)


def test_make_batch_unknown_task_and_bad_start():
    ep_a, _ = _episodes()
    stray = Episode("nope", np.zeros((2, 2), np.float32), np.zeros((2, 1), np.float32), np.zeros(2, np.float32), True)
    with pytest.raises(KeyError, match="nope"):
        make_batch([ep_a, stray], [0, 0], 3, _tasks())
    with pytest.raises(ValueError, match="start 5"):
        make_batch([ep_a], [5], 3, _tasks())


def test_sample_windows_covers_every_timestep_equally_the_first_ones_too():
    lengths, K = np.array([10, 30, 60]), 4
    rng = np.random.default_rng(0)
    episodes, starts = sample_windows(lengths, 60000, K, rng)
    assert np.all(starts > -K) and np.all(starts < lengths[episodes])
    # Windows per stored step (a window holds steps max(s, 0) .. min(s + K, L) - 1): the same for
    # step 0 as for any other, in every episode. Starts in [0, L) only gave step 0 1/K of the rest.
    cover = [np.zeros(L) for L in lengths]
    for e, s in zip(episodes, starts):
        cover[e][max(s, 0):min(s + K, lengths[e])] += 1
    per_step = np.concatenate(cover) / (len(episodes) * K / (lengths + K - 1).sum())  # 1.0 where uniform
    np.testing.assert_allclose(per_step, 1.0, atol=0.08)


def test_make_batch_window_starting_before_the_episode_is_its_first_steps():
    ep_a, _ = _episodes()
    b = make_batch([ep_a, ep_a], [-2, 0], 3, _tasks())
    np.testing.assert_array_equal(b.mask, [[1, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(b.timesteps[0], [0, 0, 0])
    np.testing.assert_array_equal(b.observations[0][0, 0], ep_a.observations[0])
    np.testing.assert_array_equal(b.observations[0][0, 1:], 0.0)
    np.testing.assert_allclose(b.returns_to_go[0, 0], b.returns_to_go[1, 0])
    with pytest.raises(ValueError, match="start -3"):
        make_batch([ep_a], [-3], 3, _tasks())


def test_sample_windows_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        sample_windows(np.array([3, 0]), 4, 2, rng)
    with pytest.raises(ValueError):
        sample_windows(np.array([3]), 0, 2, rng)
    with pytest.raises(ValueError):
        sample_windows(np.array([3]), 4, 0, rng)
