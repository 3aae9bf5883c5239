"""compare.stats against values computed by hand."""
import math

import numpy as np
import pytest

from frontier.compare.stats import bootstrap_ci, compute_to_reach, iqm, pareto_frontier, step_interpolate


def test_iqm_drops_a_quarter_from_each_end():
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)  # middle four: 3, 4, 5, 6
    assert iqm([0, 1, 2, 100]) == pytest.approx(1.5)  # 0 and 100 dropped
    assert iqm([5, 1, 4, 2, 3]) == pytest.approx(3.0)  # floor(5/4) = 1 from each end: 2, 3, 4


def test_iqm_of_fewer_than_four_is_the_mean():
    assert iqm([10, 0, 3]) == pytest.approx(13 / 3)
    assert iqm([2.5]) == pytest.approx(2.5)


def test_iqm_along_an_axis_and_no_scores():
    np.testing.assert_allclose(iqm(np.array([[0, 10], [1, 20], [2, 30], [100, 40]]), axis=0), [1.5, 25.0])
    with pytest.raises(ValueError):
        iqm([])


def test_bootstrap_of_constant_scores_is_a_point():
    assert bootstrap_ci([0.7, 0.7, 0.7]) == (pytest.approx(0.7), pytest.approx(0.7))


def test_bootstrap_percentiles_match_the_resampling_distribution():
    # Resampling [0, 0, 0, 1] (mean): P(mean = 0) = (3/4)^4 = 0.32 > 0.025, so the lower end is 0;
    # P(mean >= 0.75) = 13/256 = 0.051 > 0.025 but P(mean = 1) = 1/256 = 0.004 < 0.025, so the upper end is 0.75.
    lo, hi = bootstrap_ci([0.0, 0.0, 0.0, 1.0], statistic=np.mean, reps=4000, seed=0)
    assert (lo, hi) == (0.0, 0.75)
    # [0, 1]: mean is 0 or 1 with probability 1/4 each, so the 95% interval is the whole [0, 1].
    assert bootstrap_ci([0.0, 1.0], statistic=np.mean, reps=2000) == (0.0, 1.0)


def test_bootstrap_is_reproducible_and_seeded():
    x = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2]
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    lo, hi = bootstrap_ci(x)
    assert min(x) <= lo <= iqm(x) <= hi <= max(x)


def test_bootstrap_is_stratified_by_task():
    # Each task's runs agree, so every within-task resample is the same: {0, 0, 10, 10}, mean 5.
    # Resampling the flattened runs instead would give means from 0 to 10.
    assert bootstrap_ci([[0.0, 10.0], [0.0, 10.0]], statistic=np.mean) == (5.0, 5.0)


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], level=1.5)


def test_pareto_frontier_keeps_the_non_dominated_points():
    pts = [(3, 0.5), (1, 0.2), (2, 0.1), (2, 0.5), (4, 0.9), (5, 0.9), (1, 0.2)]
    assert pareto_frontier(pts) == [(1.0, 0.2), (2.0, 0.5), (4.0, 0.9)]


def test_compute_to_reach():
    assert compute_to_reach([1, 2, 3], [0.1, 0.6, 0.9], 0.5) == 2.0
    assert compute_to_reach([1, 2, 3], [0.1, 0.6, 0.9], 0.9) == 3.0
    assert compute_to_reach([1, 2, 3], [0.1, 0.6, 0.9], 0.95) is None
    with pytest.raises(ValueError):
        compute_to_reach([2, 1], [0.1, 0.2], 0.1)


def test_step_interpolate_holds_the_last_evaluation():
    out = step_interpolate([1, 3], [0.1, 0.5], [0, 1, 2, 3, 4])
    assert math.isnan(out[0])
    np.testing.assert_allclose(out[1:], [0.1, 0.1, 0.5, 0.5])
