"""EnvPool: environments of any mix of tasks stepped together, episodes recorded whole, through
frontier's one env fault boundary. The rollout worker (distributed/rollout.py) steps a pool with
its batched ODT policy, every expert source (envs/experts/base.py) with its controller.

    pool = EnvPool(specs, slot_tasks=[0, 1], seed_base=100)   # env i builds with seed 101, 102, ...
    obs = pool.begin(i)                  # a new episode in env i (reset_seed=s: reset(seed=s) first)
    stepped, rewards, finished, failed = pool.step(active, actions)
    # finished: (i, Episode) pairs; failed: envs whose episode was dropped (rebuilt, none begun)

An env that raises (a hung step or reset too: envs/deadline.py), or returns a non-finite
observation or reward, from a step, a reset or its build, costs that episode only: it is dropped and
counted by cause, the env rebuilt, and the caller begins another. MAX_FAILED_IN_A_ROW dropped
episodes in one env with none finished between them (a broken env, or actions that break it) raise
RuntimeError instead of looping forever.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from frontier.agents.trajectory import Episode
from frontier.envs.deadline import fault_cause
from frontier.envs.spec import TaskSpec

MAX_FAILED_IN_A_ROW = 20  # episodes one env may drop in a row before the pool gives up on it


@dataclass
class Tally:
    """What a pool counts. A caller may pass its own (an expert source's, a rollout worker's), so
    its counts accumulate over the pools it uses."""

    env_steps: int = 0  # every step taken, in kept and dropped episodes
    episodes_dropped: int = 0
    dropped_by_cause: dict = field(default_factory=dict)  # episodes_dropped by envs.deadline.fault_cause


@dataclass
class _Slot:
    """One environment and the episode it is in."""

    task_index: int
    env: object
    seed: int | None  # the env's build seed (make_env(seed=...)); None: built unseeded
    obs: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    current: object = None  # the observation the next action answers; None: no episode begun
    episode: int = -1  # index of the current episode in this env
    reset_seed: int | None = None  # the current episode's reset(seed=...), None: it continues the stream
    success: bool | None = None  # the current episode met the task's success condition (None: it has none)


class EnvPool:
    """Env i runs task `specs[slot_tasks[i]]`. `seed_base`: env builds take seeds seed_base + 1,
    seed_base + 2, ... (a rebuilt env the next one), so later unseeded resets continue a
    deterministic stream; None builds unseeded envs (for callers that seed every reset).
    `tally`: where the counts go (see Tally; default a fresh one)."""

    def __init__(self, specs: Sequence[TaskSpec], slot_tasks: Sequence[int], seed_base: int | None,
                 tally: Tally | None = None):
        self.specs = list(specs)
        self._seed_base = seed_base
        self._envs_built = 0
        self.tally = Tally() if tally is None else tally
        self._failed_in_a_row = [0] * len(slot_tasks)  # per env: drops since its last finished episode
        self.slots = [_Slot(t, *self._make_env(t)) for t in slot_tasks]

    def env(self, i: int):
        return self.slots[i].env

    def task_index(self, i: int) -> int:
        return self.slots[i].task_index

    def close(self) -> None:
        for slot in self.slots:
            _close(slot.env)

    def _make_env(self, task_index: int) -> tuple[object, int | None]:
        """(env, its build seed); a build or seeded reset that fails takes the next seed (counted as a drop)."""
        spec = self.specs[task_index]
        failed = 0
        while True:
            self._envs_built += 1
            seed = None if self._seed_base is None else self._seed_base + self._envs_built
            try:
                return spec.make_env(seed=seed), seed
            except Exception as e:
                self._count_drop(e)
                failed += 1
                if failed >= MAX_FAILED_IN_A_ROW:
                    raise RuntimeError(f"{spec.name}: {failed} envs in a row failed to build, the last with "
                                       f"{type(e).__name__}: {e}") from None

    def _count_drop(self, error: Exception) -> None:
        self.tally.episodes_dropped += 1
        cause = fault_cause(error)
        self.tally.dropped_by_cause[cause] = self.tally.dropped_by_cause.get(cause, 0) + 1

    def _fail(self, i: int, error: Exception) -> None:
        """Env i failed: count the dropped episode and rebuild the env (no episode begun)."""
        slot = self.slots[i]
        self._count_drop(error)
        self._failed_in_a_row[i] += 1
        if self._failed_in_a_row[i] >= MAX_FAILED_IN_A_ROW:
            raise RuntimeError(f"{self.specs[slot.task_index].name}: {self._failed_in_a_row[i]} episodes in a "
                               f"row failed in one env, the last with {type(error).__name__}: {error}") from None
        _close(slot.env)
        self.slots[i] = _Slot(slot.task_index, *self._make_env(slot.task_index))

    def begin(self, i: int, reset_seed: int | None = None) -> np.ndarray | None:
        """Start a new episode in env i; returns its first observation.

        Without `reset_seed` the episode continues the env's seeded stream, so it is named by (build
        seed, episode): reseeding every episode would cost ALE a ROM reload per reset (it reseeds
        only through loadROM), 50-150 ms, more than a hundred Breakout steps. With it, the env and its
        action space are reseeded, so the episode is named by that seed alone. A reset that fails
        (raises, or returns a non-finite observation) goes through the same boundary as a failed
        step: without `reset_seed` the rebuilt env (a new build seed) is reset again; with it, None
        is returned and the caller takes another seed (the same seed would fail the same way).
        """
        while True:
            slot = self.slots[i]
            try:
                obs, _ = slot.env.reset() if reset_seed is None else slot.env.reset(seed=int(reset_seed))
                if not np.all(np.isfinite(obs)):
                    raise FloatingPointError(f"non-finite reset observation in {self.specs[slot.task_index].name}")
                break
            except Exception as e:
                self._fail(i, e)
                if reset_seed is not None:
                    return None
        if reset_seed is not None:
            slot.env.action_space.seed(int(reset_seed))  # controllers that sample it are deterministic too
        slot.episode += 1
        slot.obs, slot.actions, slot.rewards = [], [], []
        slot.reset_seed = reset_seed
        slot.success = None if self.specs[slot.task_index].success_key is None else False
        slot.current = obs
        return obs

    def drop_episode(self, i: int) -> None:
        """Abandon env i's current episode (nothing recorded): the next one needs `begin`."""
        self.slots[i].current = None

    def current(self, i: int):
        """The observation env i's next action answers."""
        return self.slots[i].current

    def step(self, active: Sequence[int], actions: Sequence, executed: Sequence | None = None
             ) -> tuple[list[int], list[float], list[tuple[int, Episode]], list[int]]:
        """One step of every env in `active`: `actions[k]` is recorded for env active[k], `executed[k]`
        (default: the same) is what the env is given (DART-style noise executes a perturbed action).
        Returns (stepped envs, their rewards, finished (env, Episode) pairs, failed envs). A finished
        or failed env has no episode begun: the caller begins the next one."""
        executed = actions if executed is None else executed
        stepped, rewards, finished, failed = [], [], [], []
        for i, a, x in zip(active, actions, executed):
            slot = self.slots[i]
            self.tally.env_steps += 1  # a step that fails was taken too
            try:  # the env-step boundary: any failure costs this episode only
                next_obs, r, terminated, truncated, info = slot.env.step(x)
                if not (np.isfinite(r) and np.all(np.isfinite(next_obs))):
                    raise FloatingPointError(f"non-finite step result in {self.specs[slot.task_index].name}")
            except Exception as e:
                self._fail(i, e)
                failed.append(i)
                continue
            slot.obs.append(slot.current)
            slot.actions.append(a)
            slot.rewards.append(float(r))
            slot.current = next_obs
            if slot.success is not None:
                slot.success = slot.success or bool(info.get(self.specs[slot.task_index].success_key, False))
            stepped.append(i)
            rewards.append(float(r))
            if terminated or truncated:
                self._failed_in_a_row[i] = 0
                finished.append((i, self._episode(slot, terminated)))
                slot.current = None
        return stepped, rewards, finished, failed

    def _episode(self, slot: _Slot, terminated: bool) -> Episode:
        """The finished episode; source names it: {"seed": its reset seed} or {"seed": the env's build
        seed, "episode": its index in that env}. Callers add what produced it."""
        obs = np.stack([np.asarray(o) for o in slot.obs])
        if obs.dtype not in (np.float32, np.uint8):
            obs = obs.astype(np.int64 if np.issubdtype(obs.dtype, np.integer) else np.float32)
        acts = np.asarray(slot.actions)
        source = ({"seed": int(slot.reset_seed)} if slot.reset_seed is not None
                  else {"seed": slot.seed, "episode": slot.episode})
        return Episode(
            task=self.specs[slot.task_index].name,
            observations=obs,
            actions=acts.astype(np.float32) if acts.dtype.kind == "f" else acts.astype(np.int64),
            rewards=np.asarray(slot.rewards, dtype=np.float32),
            terminated=bool(terminated),
            source=source,
            success=slot.success,
        )


def _close(env) -> None:
    """Close an env that may be broken (its close may raise too)."""
    try:
        env.close()
    except Exception:
        pass
