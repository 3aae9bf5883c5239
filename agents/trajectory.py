"""Episodes, returns-to-go, sub-trajectory sampling and batches (numpy only).

An `Episode` is the unit every producer emits and the replay store keeps. A `Batch` is
what the learner trains on: rows of length-K windows, grouped by task for the
per-task observation and action arrays (shapes differ between tasks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from frontier.agents.spaces import Box, TaskInfo


@dataclass
class Episode:
    """One whole episode of one task, with its provenance.

    `source` records where it came from: {"kind": "scripted"|"filtered"|"rl"|"dataset"|
    "human"|"explore"|"eval", "policy": <policy id>, "seed": <env seed>, ...}.
    """

    task: str
    observations: np.ndarray  # (T, *obs_shape) float32 vectors, uint8 images, int64 discrete
    actions: np.ndarray  # (T, A) float32 in [-1, 1], or (T,) int64
    rewards: np.ndarray  # (T,) float32
    terminated: bool  # ended in a terminal state (False: truncated by a time limit)
    source: dict = field(default_factory=dict)
    success: bool | None = None  # reached the task's success condition at some step; None: the task has none

    def __post_init__(self):
        T = len(self.rewards)
        if T == 0:
            raise ValueError(f"episode of task {self.task!r} is empty")
        if len(self.observations) != T or len(self.actions) != T:
            raise ValueError(
                f"episode of task {self.task!r}: {len(self.observations)} observations, "
                f"{len(self.actions)} actions, {T} rewards (must be equal)"
            )

    @property
    def length(self) -> int:
        return len(self.rewards)

    @property
    def ret(self) -> float:
        """Undiscounted return (sum of rewards)."""
        return float(np.sum(self.rewards, dtype=np.float64))


@dataclass
class Batch:
    """A training batch of B windows of K steps, rows sorted by task index.

    Per-task arrays hold the rows `rows(i)` of task i, in row order; tasks absent from
    the batch have no key.
    """

    task: np.ndarray  # (B,) int64 task index, non-decreasing
    observations: dict[int, np.ndarray]  # task -> (B_i, K, *obs_shape)
    actions: dict[int, np.ndarray]  # task -> (B_i, K, A) float32 or (B_i, K) int64
    returns_to_go: np.ndarray  # (B, K) float32, already multiplied by the task's reward scale
    rewards: np.ndarray  # (B, K) float32, multiplied by the task's reward scale (0 in padding)
    terminals: np.ndarray  # (B, K) float32, 1 at the last step of an episode that ended in a terminal state
    timesteps: np.ndarray  # (B, K) int64, step index within the episode
    mask: np.ndarray  # (B, K) float32, 1 for real steps, 0 for right padding

    def rows(self, task_index: int) -> np.ndarray:
        return np.flatnonzero(self.task == task_index)

    @property
    def size(self) -> int:
        return len(self.task)


def returns_to_go(rewards: np.ndarray, scale: float) -> np.ndarray:
    """Undiscounted returns-to-go, scaled: rtg[t] = scale * sum_{t' >= t} rewards[t']."""
    return (scale * reward_suffix_sums(rewards)).astype(np.float32)


def reward_suffix_sums(rewards: np.ndarray) -> np.ndarray:
    """(T,) float64: sum of rewards from each step to the end, unscaled. Any suffix of an
    episode gives the same numbers bit for bit as the whole episode's sums from that step
    (both add from the last reward backwards), so a caller may compute them once per episode."""
    r = np.asarray(rewards, dtype=np.float64)  # accumulate in float64: long episodes lose precision in float32
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {r.shape}")
    return np.cumsum(r[::-1])[::-1]  # (T,)


def sample_windows(
    lengths: np.ndarray, batch_size: int, context_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `batch_size` windows of K = `context_len` steps so that every stored timestep is
    in K windows, as likely as any other: starts uniform in [-(K-1), length) of an episode
    chosen with probability proportional to length + K - 1 (its number of starts).

    A start s < 0 is the episode's first s + K steps (make_batch): the context an acting
    policy has at those steps. With starts in [0, length) only, step t < K would be in t + 1
    windows, step 0 in one (1/K of the weight of a later step), and an imitated policy's
    first actions, those that decide where a manipulation episode goes, the least trained.

    Returns (episode_indices (B,) int64, starts (B,) int64).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or len(lengths) == 0:
        raise ValueError(f"lengths must be a non-empty 1-D array, got shape {lengths.shape}")
    if np.any(lengths <= 0):
        raise ValueError(f"episode lengths must be positive, got min {lengths.min()}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if context_len < 1:
        raise ValueError(f"context_len must be >= 1, got {context_len}")
    n_starts = lengths + context_len - 1  # (E,)
    episodes = rng.choice(len(lengths), size=batch_size, p=n_starts / n_starts.sum()).astype(np.int64)  # (B,)
    # floor(u * n) is uniform on {0, ..., n-1}; min() guards the u -> 1 rounding edge.
    n = n_starts[episodes]
    starts = np.minimum((rng.random(batch_size) * n).astype(np.int64), n - 1) - (context_len - 1)  # (B,)
    return episodes, starts


def make_batch(
    episodes: Sequence[Episode],
    starts: Sequence[int],
    context_len: int,
    tasks: Sequence[TaskInfo],
    suffix_sums: Sequence[np.ndarray] | None = None,
) -> Batch:
    """Cut window k = steps [starts[k], starts[k] + K) out of episodes[k] into a `Batch`.

    A start in [-(K-1), 0) keeps the steps from 0 (the window's first position is step 0).
    Windows that end past the episode end, or start before it, are right-padded (mask 0,
    zeros elsewhere).
    Returns-to-go are recomputed from each episode's achieved rewards (hindsight
    relabelling) and scaled by its task's reward_scale. Rows are sorted by task index,
    the position of the episode's task in `tasks`.

    `suffix_sums[k]`, when given, is `reward_suffix_sums(episodes[k].rewards)`, kept by a
    caller that samples the same episodes many times (the replay store); without it each
    window sums the rest of its episode.
    """
    if len(episodes) != len(starts):
        raise ValueError(f"{len(episodes)} episodes but {len(starts)} starts")
    if suffix_sums is not None and len(suffix_sums) != len(episodes):
        raise ValueError(f"{len(episodes)} episodes but {len(suffix_sums)} suffix sums")
    if len(episodes) == 0:
        raise ValueError("make_batch needs at least one window")
    if context_len < 1:
        raise ValueError(f"context_len must be >= 1, got {context_len}")
    K = context_len
    index = {t.name: i for i, t in enumerate(tasks)}
    task_of = np.empty(len(episodes), dtype=np.int64)
    for k, ep in enumerate(episodes):
        if ep.task not in index:
            raise KeyError(f"unknown task {ep.task!r} (batch tasks: {sorted(index)})")
        task_of[k] = index[ep.task]
        if not -K < int(starts[k]) < ep.length:
            raise ValueError(f"start {starts[k]} outside [{1 - K}, {ep.length}) for an episode of length "
                             f"{ep.length} and K = {K} (task {ep.task!r})")
    order = np.argsort(task_of, kind="stable")  # (B,) rows sorted by task, ties keep input order
    B = len(order)
    task = task_of[order]
    rtg = np.zeros((B, K), dtype=np.float32)
    rewards = np.zeros((B, K), dtype=np.float32)
    terminals = np.zeros((B, K), dtype=np.float32)
    timesteps = np.zeros((B, K), dtype=np.int64)
    mask = np.zeros((B, K), dtype=np.float32)
    observations: dict[int, np.ndarray] = {}
    actions: dict[int, np.ndarray] = {}
    starts = np.asarray(starts, dtype=np.int64)[order]  # (B,)
    eps = [episodes[k] for k in order]
    lengths = np.array([ep.length for ep in eps], dtype=np.int64)  # (B,)
    ends = np.minimum(starts + K, lengths)  # (B,)
    starts = np.maximum(starts, 0)  # (B,) a window that starts before the episode keeps its steps from 0
    n = ends - starts  # (B,) real steps per window, >= 1
    # Every real step of the batch, flattened: its row and its position in the window. The
    # windows' slices are gathered once per array (one concatenate) and scattered in one
    # assignment, instead of a few numpy calls per window.
    offset = np.cumsum(n) - n  # (B,) where each window's steps begin in the flat order
    step_row = np.repeat(np.arange(B), n)  # (N,)
    step_pos = np.arange(len(step_row)) - np.repeat(offset, n)  # (N,)
    mask[step_row, step_pos] = 1.0
    timesteps[step_row, step_pos] = np.repeat(starts, n) + step_pos
    scale = np.array([tasks[i].reward_scale for i in task])  # (B,)
    if suffix_sums is None:
        rtg_real = np.concatenate([reward_suffix_sums(ep.rewards[s:])[: e - s] for ep, s, e in zip(eps, starts, ends)])
    else:
        rtg_real = np.concatenate([suffix_sums[k][s:e] for k, s, e in zip(order, starts, ends)])  # (N,) float64
    rtg[step_row, step_pos] = (np.repeat(scale, n) * rtg_real).astype(np.float32)
    rewards[step_row, step_pos] = np.repeat(scale, n) * np.concatenate([ep.rewards[s:e] for ep, s, e in zip(eps, starts, ends)])
    ended = np.array([ep.terminated for ep in eps]) & (ends == lengths)  # (B,)
    terminals[np.flatnonzero(ended), n[ended] - 1] = 1.0
    for i in np.unique(task):
        rows = np.flatnonzero(task == i)  # contiguous, since rows are sorted by task
        lo, hi = rows[0], rows[-1] + 1
        steps = slice(offset[lo], offset[rows[-1]] + n[rows[-1]])  # this task's steps in the flat order
        r, p = step_row[steps] - lo, step_pos[steps]
        info = tasks[i]
        obs_shape = info.observation.shape if isinstance(info.observation, Box) else ()
        act_shape = (info.action.dim,) if info.continuous else ()
        obs = np.zeros((len(rows), K, *obs_shape), dtype=eps[lo].observations.dtype)
        act = np.zeros((len(rows), K, *act_shape), dtype=np.float32 if info.continuous else np.int64)
        windows = list(zip(eps[lo:hi], starts[lo:hi], ends[lo:hi]))
        obs[r, p] = np.concatenate([ep.observations[s:e] for ep, s, e in windows])
        act[r, p] = np.concatenate([ep.actions[s:e] for ep, s, e in windows])
        observations[int(i)] = obs
        actions[int(i)] = act
    return Batch(task=task, observations=observations, actions=actions, returns_to_go=rtg, rewards=rewards,
                 terminals=terminals, timesteps=timesteps, mask=mask)
