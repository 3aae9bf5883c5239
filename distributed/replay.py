"""ReplayStore: trajectories per task, whole-episode eviction, task-balanced sampling with
hindsight relabelling, and an append-only on-disk log.

Two eviction rules (`eviction`):
- "reserve": a share of each task's capacity is reserved for offline (expert) episodes, the best
  by return kept there for the whole run; online episodes leave first-in first-out.
- "odt": ODT's buffer. Offline episodes may fill the whole capacity (the best by return are
  kept); every online episode then replaces the WORST remaining offline one, and once none is
  left the oldest online one. Online data takes over the store as it arrives, as in ODT's ring
  buffer over return-sorted trajectories.

A plain class: the serial runner uses it directly; the Ray driver wraps it with
`ray.remote(ReplayStore)`.

On-disk format (`<run>/replay/`): one shard per acknowledged `add` call, named
`shard-<seq:08d>.npz`, in the episode-file format of `agents/storage.py` (written to a
temporary name then renamed, so atomic), each meta record carrying `"offline"` too.
Replaying the shards in sequence order through `add` rebuilds the store exactly, since
eviction is deterministic.
"""
from __future__ import annotations

import bisect
import collections
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from frontier.agents.spaces import TaskInfo
from frontier.agents.storage import read_episodes, write_episodes
from frontier.agents.trajectory import Batch, Episode, make_batch, reward_suffix_sums, sample_windows

EVICTION_RULES = ("reserve", "odt")
# How batches are shared between tasks (replay.task_sampling): by fixed weights (replay.task_weights,
# missing tasks 1: uniform by default), or by the held-out action NLL (`nll_weights`).
TASK_SAMPLING = ("fixed", "val_nll")
# `holdout()`: at most this many windows per task, so measuring costs a few batches' forward pass.
HOLDOUT_WINDOWS = 64
# `stats()["top_return"]`: the mean return of this share of the stored episodes, the best ones.
TOP_SHARE = 0.1


@dataclass
class _TaskBuffer:
    offline: list[Episode] = field(default_factory=list)  # kept sorted by return, best first
    online: collections.deque = field(default_factory=collections.deque)
    holdout: list[Episode] = field(default_factory=list)  # offline episodes never trained on
    offline_seen: int = 0  # offline episodes ever added, held-out ones included
    offline_steps: int = 0
    online_steps: int = 0
    added_episodes: int = 0
    evicted_episodes: int = 0
    best_return: float | None = None  # of every episode ever stored (offline and online)
    # Returns of the episodes stored now, kept sorted (ascending) for the top-decile statistic.
    returns: list[float] = field(default_factory=list)
    # id(episode) -> [its reward suffix sums, times stored], computed at its first insert: every
    # sample of a window then slices them instead of summing the rest of its episode again.
    suffix_sums: dict[int, list] = field(default_factory=dict)

    # (episodes, lengths, suffix sums) for sampling, rebuilt only after an insert changed the
    # buffer: the learner samples far more often than writers add.
    _view: tuple[list[Episode], np.ndarray, list[np.ndarray]] | None = None

    @property
    def steps(self) -> int:
        return self.offline_steps + self.online_steps

    def view(self) -> tuple[list[Episode], np.ndarray, list[np.ndarray]]:
        if self._view is None:
            eps = self.offline + list(self.online)
            self._view = (eps, np.array([e.length for e in eps]), [self.suffix_sums[id(e)][0] for e in eps])
        return self._view

    def keep(self, ep: Episode) -> None:
        bisect.insort(self.returns, ep.ret)
        entry = self.suffix_sums.setdefault(id(ep), [None, 0])
        if entry[0] is None:
            entry[0] = reward_suffix_sums(ep.rewards)
        entry[1] += 1

    def drop(self, ep: Episode) -> None:
        del self.returns[bisect.bisect_left(self.returns, ep.ret)]
        entry = self.suffix_sums[id(ep)]
        entry[1] -= 1
        if entry[1] == 0:
            del self.suffix_sums[id(ep)]
        self.evicted_episodes += 1


class ReplayStore:
    """Per-task episode store. `add` persists then acknowledges; `sample` draws a Batch."""

    def __init__(
        self,
        tasks: Sequence[TaskInfo],
        capacity: int,
        offline_share: float,
        context_len: int,
        task_weights: dict[str, float] | None = None,
        directory: str | Path | None = None,
        seed: int = 0,
        eviction: str = "reserve",
        holdout_share: float = 0.0,
    ):
        if eviction not in EVICTION_RULES:
            raise ValueError(f"unknown replay eviction rule {eviction!r} (known: {', '.join(EVICTION_RULES)})")
        if not 0.0 <= holdout_share < 1.0:
            raise ValueError(f"holdout share must be in [0, 1), got {holdout_share}")
        self.tasks = list(tasks)
        self.capacity = capacity
        self.holdout_share = holdout_share
        self.eviction = eviction
        self.offline_capacity = capacity if eviction == "odt" else int(capacity * offline_share)
        self.context_len = context_len
        self.weights = np.array([(task_weights or {}).get(t.name, 1.0) for t in self.tasks], dtype=np.float64)
        self.index = {t.name: i for i, t in enumerate(self.tasks)}
        self.buffers = [_TaskBuffer() for _ in self.tasks]
        self.rng = np.random.default_rng(seed)
        self.directory = Path(directory) if directory is not None else None
        self.next_shard = 0
        # The Ray store is a threaded actor: writers and the learner call in concurrently.
        self._lock = threading.Lock()
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    # -- writing -------------------------------------------------------------------------

    def add(self, episodes: Sequence[Episode], offline: bool = False) -> int:
        """Store whole episodes (persisted first when the store has a directory); returns how many."""
        episodes = list(episodes)
        for ep in episodes:
            if ep.task not in self.index:
                raise KeyError(f"replay store has no task {ep.task!r}")
        if not episodes:
            return 0
        with self._lock:
            if self.directory is not None:
                self._write_shard(episodes, offline)
            for ep in episodes:
                self._insert(ep, offline)
        return len(episodes)

    def _held_out(self, buf: _TaskBuffer) -> bool:
        """Whether the task's next offline episode is held out: every m-th one from the second,
        m = round(1 / holdout_share) (at least 2), so a task keeps its first episode to train on and
        holds out one as soon as it has two. Decided by arrival order, so replaying the shards
        holds out the same episodes."""
        n = buf.offline_seen
        buf.offline_seen += 1
        return self.holdout_share > 0 and n % max(2, round(1 / self.holdout_share)) == 1

    def _insert(self, ep: Episode, offline: bool) -> None:
        buf = self.buffers[self.index[ep.task]]
        if offline and self._held_out(buf):
            buf.holdout.append(ep)
            return
        buf.added_episodes += 1
        buf.best_return = ep.ret if buf.best_return is None else max(buf.best_return, ep.ret)
        buf._view = None
        buf.keep(ep)
        if offline:
            buf.offline.append(ep)
            buf.offline.sort(key=lambda e: -e.ret)  # stable: ties keep arrival order
            buf.offline_steps += ep.length
            # Keep the best offline episodes within the reserved share (always at least one).
            while buf.offline_steps > self.offline_capacity and len(buf.offline) > 1:
                worst = buf.offline.pop()
                buf.offline_steps -= worst.length
                buf.drop(worst)
        else:
            buf.online.append(ep)
            buf.online_steps += ep.length
            if self.eviction == "odt":
                while buf.steps > self.capacity and buf.offline:
                    worst = buf.offline.pop()
                    buf.offline_steps -= worst.length
                    buf.drop(worst)
        # Online episodes go first-in first-out once the task is over capacity.
        while buf.steps > self.capacity and len(buf.online) > 1:
            old = buf.online.popleft()
            buf.online_steps -= old.length
            buf.drop(old)

    def _write_shard(self, episodes: list[Episode], offline: bool) -> None:
        write_episodes(self.directory / f"shard-{self.next_shard:08d}.npz", episodes, {"offline": offline})
        self.next_shard += 1

    def restore(self, strict: bool = False) -> tuple[int, int]:
        """Rebuild the store from its directory's shards (after a crash or stop); returns (episodes
        restored, shards quarantined). An unreadable shard is moved to quarantine/ and named in one
        line (its episodes are lost), or with `strict` raises ValueError."""
        assert self.directory is not None
        n = 0
        quarantined = []

        def quarantine(path: Path, error: ValueError) -> None:
            if strict:
                raise error
            dest = self.directory / "quarantine" / path.name
            dest.parent.mkdir(exist_ok=True)
            path.rename(dest)
            quarantined.append(path)
            self.next_shard = max(self.next_shard, int(path.stem.split("-")[1]) + 1)
            print(f"replay: {error}; moved to {dest}, its episodes are lost", file=sys.stderr, flush=True)

        for path, episodes, offline in read_shards(self.directory, quarantine):
            for ep in episodes:
                if ep.task in self.index:
                    self._insert(ep, offline)
                    n += 1
            self.next_shard = max(self.next_shard, int(path.stem.split("-")[1]) + 1)
        return n, len(quarantined)

    # -- reading -------------------------------------------------------------------------

    def sample(self, batch_size: int) -> Batch:
        """Task-balanced batch of length-K windows; returns-to-go relabelled from achieved rewards."""
        with self._lock:  # choose windows under the lock; build the batch outside it
            steps = np.array([b.steps for b in self.buffers], dtype=np.float64)
            w = np.where(steps > 0, self.weights, 0.0)
            if w.sum() <= 0:
                raise RuntimeError("replay store is empty: nothing to sample")
            counts = self.rng.multinomial(batch_size, w / w.sum())
            chosen: list[Episode] = []
            sums: list[np.ndarray] = []
            starts: list[np.ndarray] = []
            for buf, n in zip(self.buffers, counts):
                if n == 0:
                    continue
                eps, lengths, suffix = buf.view()
                idx, st = sample_windows(lengths, int(n), self.context_len, self.rng)
                chosen.extend(eps[i] for i in idx)
                sums.extend(suffix[i] for i in idx)
                starts.append(st)
        return make_batch(chosen, np.concatenate(starts), self.context_len, self.tasks, sums)

    def holdout(self) -> Batch | None:
        """The held-out episodes as one fixed batch (None if there are none): windows starting at
        steps 0, K, 2K, ... of each, so every step is predicted once, at most HOLDOUT_WINDOWS
        evenly spaced ones per task; returns-to-go relabelled as in `sample`."""
        chosen: list[Episode] = []
        starts: list[int] = []
        with self._lock:
            for buf in self.buffers:
                windows = [(ep, s) for ep in buf.holdout for s in range(0, ep.length, self.context_len)]
                if len(windows) > HOLDOUT_WINDOWS:
                    windows = [windows[i] for i in np.linspace(0, len(windows) - 1, HOLDOUT_WINDOWS).astype(int)]
                chosen += [ep for ep, _ in windows]
                starts += [s for _, s in windows]
        return make_batch(chosen, starts, self.context_len, self.tasks) if chosen else None

    def set_task_weights(self, weights: dict[str, float]) -> None:
        """Sample tasks by these weights from now on (tasks not named keep theirs)."""
        with self._lock:
            for task, w in weights.items():
                self.weights[self.index[task]] = w

    def rng_state(self) -> dict:
        """The sampling stream's state (plain numbers), for a checkpoint."""
        with self._lock:
            return self.rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        """Continue the sampling stream from `rng_state()`'s value."""
        with self._lock:
            self.rng.bit_generator.state = state

    def episodes(self, task: str) -> list[Episode]:
        return list(self.buffers[self.index[task]].view()[0])

    def stats(self) -> dict[str, dict]:
        out = {}
        for t, buf in zip(self.tasks, self.buffers):
            out[t.name] = {
                "timesteps": buf.steps,
                "offline_timesteps": buf.offline_steps,
                "online_timesteps": buf.online_steps,
                "episodes": len(buf.offline) + len(buf.online),
                "added_episodes": buf.added_episodes,
                "evicted_episodes": buf.evicted_episodes,
                "holdout_episodes": len(buf.holdout),
                "sampling_weight": float(self.weights[self.index[t.name]]),
                "best_return": buf.best_return,
                "top_return": top_mean(buf.returns),
            }
        return out

    def total_timesteps(self) -> int:
        return sum(b.steps for b in self.buffers)


def nll_weights(nll: dict[str, float], tasks: Sequence[str], floor: float, temperature: float) -> dict[str, float]:
    """Batch shares by held-out action NLL (replay.task_sampling "val_nll"): `floor` of every
    batch spread evenly over the tasks, the rest by a softmax of NLL / `temperature` (nats): a task
    whose held-out NLL is `temperature` higher than another's gets e times its share of the rest,
    so the tasks the model fits worst get the most updates. A task without held-out data counts
    with the mean NLL. Returns {task: share}, summing to 1."""
    known = [float(nll[t]) for t in tasks if t in nll]
    fill = float(np.mean(known)) if known else 0.0
    x = np.array([float(nll[t]) if t in nll else fill for t in tasks]) / temperature
    soft = np.exp(x - x.max())
    soft /= soft.sum()
    return {t: float(floor / len(tasks) + (1.0 - floor) * p) for t, p in zip(tasks, soft)}


def top_mean(sorted_returns: list[float]) -> float | None:
    """Mean of the best TOP_SHARE of `sorted_returns` (ascending), at least one; None if empty."""
    if not sorted_returns:
        return None
    n = max(1, round(TOP_SHARE * len(sorted_returns)))
    return float(np.mean(sorted_returns[-n:]))


def read_shards(directory: str | Path, on_error=None):
    """Yield (path, episodes, offline) for every complete shard in sequence order.

    A shard that cannot be read raises ValueError naming the file, unless `on_error(path, error)`
    is given: then it is called and the shard skipped (acknowledged data is never skipped
    silently). Leftover `.tmp` files (a write interrupted before its rename, hence never
    acknowledged) are ignored.
    """
    for path in sorted(Path(directory).glob("shard-*.npz")):
        try:
            episodes, meta = read_episodes(path)
        except ValueError as e:
            if on_error is None:
                raise
            on_error(path, e)
            continue
        yield path, episodes, bool(meta[0]["offline"]) if meta else False
