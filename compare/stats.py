"""Statistics for comparing runs across seeds: IQM, bootstrap confidence intervals, the Pareto
frontier of score against compute, and the compute needed to reach a score. Pure numpy.

    iqm([0.1, 0.5, 0.6, 0.9])                                   # mean of the middle half
    lo, hi = bootstrap_ci(scores, iqm, reps=2000, seed=0)       # 95% percentile bootstrap over seeds
    front = pareto_frontier([(flops, score), ...])              # the non-dominated points
    compute_to_reach(xs, ys, 0.8)                               # first x where y >= 0.8

IQM follows Agarwal et al. 2021 (rliable): the mean of the scores left after removing
floor(n/4) from each end of the sorted scores (scipy.stats.trim_mean with 0.25). With
fewer than 4 scores nothing is removed and the IQM is the mean.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

CI_LEVEL = 0.95
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0


def iqm(scores: Sequence[float] | np.ndarray, axis: int = 0) -> np.ndarray | float:
    """Interquartile mean along `axis` (see the module docstring)."""
    x = np.sort(np.asarray(scores, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm of no scores")
    cut = n // 4
    kept = np.take(x, np.arange(cut, n - cut), axis=axis)
    out = kept.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def bootstrap_ci(
    scores: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    reps: int = BOOTSTRAP_REPS,
    level: float = CI_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `statistic` over runs.

    `scores` is (n_runs,) or (n_runs, n_tasks). With several tasks the bootstrap is
    stratified (rliable): each resample draws n_runs runs with replacement independently
    within each task, and `statistic` is applied to the flattened resample. A fixed `seed`
    makes the interval reproducible.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"bootstrap_ci needs (n_runs,) or (n_runs, n_tasks) scores, got shape {x.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    if reps < 1:
        raise ValueError(f"bootstrap reps must be >= 1, got {reps}")
    n, k = x.shape
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(reps, n, k))  # run drawn for each (rep, slot, task)
    resampled = np.take_along_axis(np.broadcast_to(x, (reps, n, k)), idx, axis=1)  # (reps, n, k)
    stats = np.array([statistic(r.reshape(-1)) for r in resampled])  # (reps,)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def pareto_frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (compute, score) that no other point dominates (no more compute AND no less score,
    one of them strictly), sorted by compute. Ties keep one copy."""
    pts = sorted({(float(c), float(s)) for c, s in points}, key=lambda p: (p[0], -p[1]))
    front: list[tuple[float, float]] = []
    best = -np.inf
    for c, s in pts:
        if s > best:
            front.append((c, s))
            best = s
    return front


def compute_to_reach(xs: Sequence[float], ys: Sequence[float], level: float) -> float | None:
    """The first x (in the given order, which must be increasing) whose y reaches `level`;
    None if no y does. Evaluation points are discrete: no interpolation between them."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"xs and ys differ in length: {x.shape} vs {y.shape}")
    if np.any(np.diff(x) < 0):
        raise ValueError("xs must be non-decreasing")
    hit = np.nonzero(y >= level)[0]
    return float(x[hit[0]]) if len(hit) else None


def step_interpolate(xs: Sequence[float], ys: Sequence[float], grid: Sequence[float]) -> np.ndarray:
    """The value of the step function through (xs, ys) at each grid point: the y of the last x
    at or before it (a run's score holds until its next evaluation); NaN before the first x."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    i = np.searchsorted(x, np.asarray(grid, dtype=np.float64), side="right") - 1
    return np.where(i >= 0, y[np.clip(i, 0, len(y) - 1)], np.nan)
