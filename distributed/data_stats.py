"""Statistics of the stored data that the model and the rollouts are given: observation
normalization, the return head's range, and return targets relative to the data."""
from __future__ import annotations

import numpy as np

# Expert data can be nearly constant in some dimensions (an LQR-held pendulum, RAM bytes
# that never change): without a floor, the first deviation at run time would reach the
# model as a huge input.
MIN_OBSERVATION_STD = 0.01
# The replay statistic each data-relative rule of train.return_targets takes as its reference return.
DATA_TARGET_STAT = {"data": "best_return", "top": "top_return"}


def observation_stats(episodes) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of vector observations, std floored at MIN_OBSERVATION_STD."""
    obs = np.concatenate([e.observations for e in episodes]).astype(np.float64)
    return obs.mean(0), np.maximum(obs.std(0), MIN_OBSERVATION_STD)


def return_stats(episodes, reward_scale: float) -> tuple[float, float, float, float]:
    """Mean, std, min and max of the scaled returns of `episodes` (the return head's units and range)."""
    returns = np.array([e.ret for e in episodes], dtype=np.float64) * reward_scale
    return float(returns.mean()), float(returns.std()), float(returns.min()), float(returns.max())


def rollout_targets(train_cfg, specs, references: dict, stats, mode: str) -> dict[str, float | None] | None:
    """Return targets for rollout `mode` ("eval" or "explore") under `train.return_targets`: None
    for the tasks' own ("task"), None per task for a prediction from each episode's first
    observation ("state"), else `data_targets` at the mode's scale; `stats()` gives the replay
    store's stats, asked for only when the targets need them."""
    if train_cfg.return_targets == "task":
        return None
    if train_cfg.return_targets == "state":
        return {spec.name: None for spec in specs}
    scale = train_cfg.eval_target_scale if mode == "eval" else train_cfg.explore_target_scale
    return data_targets(specs, references, stats(), mode, train_cfg.return_targets, scale)


def data_targets(specs, references: dict, stats: dict, mode: str, rule: str, scale: float) -> dict[str, float]:
    """{task: return target} for rollout `mode` from the replay store's stats under `rule` ("data":
    the best return ever stored, "top": the mean of the best 10% stored now): `scale` times the
    reference return's distance from the random return, capped at the task's own target for
    `mode` and never below the reference; tasks with no episode yet are left out."""
    out = {}
    for spec in specs:
        best = stats[spec.name][DATA_TARGET_STAT[rule]]
        if best is None:
            continue
        random_ret = references[spec.name][0]
        above = random_ret + scale * (best - random_ret)
        out[spec.name] = min(spec.return_target(mode), max(best, above))
    return out
