"""RolloutWorker: steps many environments of any mix of tasks with one batched policy forward
per step, and returns whole finished episodes.

A plain class; `RolloutService` adds the calls the trainer makes of a rollout actor, in process
(distributed/local_executor.py) or as a Ray actor (distributed/ray_executor.py). Modes:
- "explore": the current ODT policy, sampled actions, exploration return targets;
  environments persist across `collect` calls, so episodes span calls and none is cut.
- "eval": deterministic actions, evaluation return targets; `evaluate` starts fresh episodes.
Expert collection (any expert source) is `collect_expert`.

An environment that raises (a hung step or reset too: envs/deadline.py), or returns a non-finite
observation or reward, from a step, a reset or its build, costs that episode only: it is dropped
and counted, the environment rebuilt, and the worker goes on;
MAX_FAILED_IN_A_ROW failures in a row in one env (a broken env, or a policy whose actions break
it) end the call with a RuntimeError instead of looping forever.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from agents.model import DecisionTransformer, ModelConfig
from agents.policy import Policy
from agents.trajectory import Episode
from envs.registry import get_task, make_expert
from envs.deadline import fault_cause
from envs.experts.base import MAX_FAILED_IN_A_ROW
from envs.seeding import stream_seed


@dataclass
class _Slot:
    """One environment and the episode it is in."""

    task_index: int
    env: object
    seed: int  # the env's seed, given to make_env when the env was built
    obs: list
    actions: list
    rewards: list
    current: object = None  # the observation the policy acts on next
    episode: int = -1  # index of the current episode in this env
    success: bool | None = None  # the current episode met the task's success condition (None: it has none)


class RolloutWorker:
    """Holds `num_envs` environments; env i runs task `tasks[i % len(tasks)]`."""

    def __init__(
        self,
        task_names: Sequence[str],
        all_task_names: Sequence[str],
        model_cfg: ModelConfig,
        mode: str,
        num_envs: int,
        seed: int,
        worker_index: int = 0,
    ):
        if mode not in ("explore", "eval"):
            raise ValueError(f"rollout mode must be 'explore' or 'eval', got {mode!r}")
        self.mode = mode
        self.specs = [get_task(n) for n in all_task_names]
        infos = [s.info() for s in self.specs]
        self.task_indices = [list(all_task_names).index(n) for n in task_names]
        self.model = DecisionTransformer(model_cfg, infos)
        self.policy = Policy(self.model, infos, num_envs, seed=stream_seed("policy", seed, worker=worker_index))
        self.weights_version = -1
        self.targets: dict[int, float] = {}  # task index -> return target replacing the spec's (see set_targets)
        self.num_envs = num_envs
        # Distinct, reproducible env seeds per worker and slot: each env built takes the next one.
        self._seed_base = stream_seed(mode, seed, worker=worker_index)
        self._envs_built = 0
        self.env_steps = 0
        self.episodes_dropped = 0
        self.dropped_by_cause: dict[str, int] = {}  # episodes_dropped by envs.deadline.fault_cause
        self.cpu_s = 0.0
        self._failed_in_a_row = [0] * num_envs  # per slot: drops since its last good step
        self.slots = [self._new_slot(self.task_indices[i % len(self.task_indices)]) for i in range(num_envs)]

    # -- weights -------------------------------------------------------------------------

    def set_weights(self, version: int, weights: dict) -> None:
        """Act with `weights` from now on; `version` (the learner's update count) labels the episodes."""
        self.policy.load_weights(weights)
        self.weights_version = version

    def get_weights_version(self) -> int:
        return self.weights_version

    def set_targets(self, targets: dict[str, float]) -> None:
        """Condition episodes started from now on on these returns ({task name: target}) instead
        of the tasks' own targets for this worker's mode."""
        names = [s.name for s in self.specs]
        self.targets.update({names.index(t): float(v) for t, v in targets.items()})

    # -- environment plumbing ------------------------------------------------------------

    def _next_seed(self) -> int:
        self._envs_built += 1
        return self._seed_base + self._envs_built

    def _new_slot(self, task_index: int) -> _Slot:
        return _Slot(task_index, *self._make_env(task_index), [], [], [])

    def _make_env(self, task_index: int) -> tuple[object, int]:
        """(env, its seed); a build or seeded reset that fails takes the next seed (counted as a drop)."""
        spec = self.specs[task_index]
        failed = 0
        while True:
            seed = self._next_seed()
            try:
                return spec.make_env(seed=seed), seed
            except Exception as e:
                self._count_drop(e)
                failed += 1
                if failed >= MAX_FAILED_IN_A_ROW:
                    raise RuntimeError(f"{spec.name}: {failed} envs in a row failed to build, the last with "
                                       f"{type(e).__name__}: {e}") from None

    def _begin(self, i: int) -> None:
        """Start a new episode in slot i.

        The env was seeded when built (`make_env(seed=...)`); its episodes continue that
        deterministic stream, so an episode is named by (seed, episode). Reseeding every episode
        would cost ALE a ROM reload per reset (it reseeds only through loadROM): 50-150 ms, more
        than a hundred Breakout steps. A reset that fails (raises, or returns a non-finite
        observation) goes through the same boundary as a failed step.
        """
        while True:
            slot = self.slots[i]
            try:
                obs, _ = slot.env.reset()
                if not np.all(np.isfinite(obs)):
                    raise FloatingPointError(f"non-finite reset observation in {self.specs[slot.task_index].name}")
                break
            except Exception as e:
                self._fail(i, e)
        slot.episode += 1
        slot.obs, slot.actions, slot.rewards = [], [], []
        slot.success = None if self.specs[slot.task_index].success_key is None else False
        slot.current = obs
        target = self.targets.get(slot.task_index, self.specs[slot.task_index].return_target(self.mode))
        self.policy.reset(i, slot.task_index, target)

    def _count_drop(self, error: Exception) -> None:
        self.episodes_dropped += 1
        cause = fault_cause(error)
        self.dropped_by_cause[cause] = self.dropped_by_cause.get(cause, 0) + 1

    def _fail(self, i: int, error: Exception) -> None:
        """Slot i's env failed: count the dropped episode and rebuild the env (no episode begun).
        RuntimeError after MAX_FAILED_IN_A_ROW failures in a row: broken, not unlucky, never spin."""
        slot = self.slots[i]
        self._count_drop(error)
        self._failed_in_a_row[i] += 1
        if self._failed_in_a_row[i] >= MAX_FAILED_IN_A_ROW:
            raise RuntimeError(f"{self.specs[slot.task_index].name}: {self._failed_in_a_row[i]} episodes in a "
                               f"row failed in one env, the last with {type(error).__name__}: {error}") from None
        try:
            slot.env.close()
        except Exception:
            pass
        self.slots[i] = self._new_slot(slot.task_index)

    def _step_all(self, active: list[int]) -> list[tuple[int, Episode]]:
        """One step of every active slot; returns finished (slot, episode) pairs."""
        obs = [self.slots[i].current for i in active]
        actions = self.policy.act(active, obs, deterministic=self.mode == "eval")
        finished = []
        stepped, rewards = [], []
        for i, a in zip(active, actions):
            slot = self.slots[i]
            try:  # the env-step boundary: any failure costs this episode only
                next_obs, r, terminated, truncated, info = slot.env.step(a)
                if not (np.isfinite(r) and np.all(np.isfinite(next_obs))):
                    raise FloatingPointError(f"non-finite step result in {self.specs[slot.task_index].name}")
            except Exception as e:
                self._fail(i, e)
                self._begin(i)
                continue
            self._failed_in_a_row[i] = 0
            self.env_steps += 1
            slot.obs.append(slot.current)
            slot.actions.append(a)
            slot.rewards.append(float(r))
            slot.current = next_obs
            if slot.success is not None:
                slot.success = slot.success or bool(info.get(self.specs[slot.task_index].success_key, False))
            stepped.append(i)
            rewards.append(float(r))
            if terminated or truncated:
                finished.append((i, self._episode(slot, terminated)))
        self.policy.rewards(stepped, rewards)
        return finished

    def _episode(self, slot: _Slot, terminated: bool) -> Episode:
        spec = self.specs[slot.task_index]
        acts = np.asarray(slot.actions)
        return Episode(
            task=spec.name,
            observations=np.asarray(slot.obs),
            actions=acts.astype(np.float32) if acts.dtype.kind == "f" else acts.astype(np.int64),
            rewards=np.asarray(slot.rewards, dtype=np.float32),
            terminated=bool(terminated),
            source={"kind": self.mode, "policy": f"odt@{self.weights_version}", "seed": slot.seed,
                    "episode": slot.episode},
            success=slot.success,
        )

    # -- modes ---------------------------------------------------------------------------

    def collect(self, min_steps: int) -> list[Episode]:
        """Exploration: step all envs until at least `min_steps` env steps; return finished episodes."""
        t0 = time.process_time()
        if self.slots[0].current is None:
            for i in range(self.num_envs):
                self._begin(i)
        done: list[Episode] = []
        start = self.env_steps
        active = list(range(self.num_envs))
        while self.env_steps - start < min_steps:
            for i, ep in self._step_all(active):
                done.append(ep)
                self._begin(i)
        self.cpu_s += time.process_time() - t0
        return done

    def evaluate(self, episodes_per_task: int) -> list[Episode]:
        """Evaluation: fresh episodes until every task of this worker has `episodes_per_task`."""
        t0 = time.process_time()
        need = {t: episodes_per_task for t in set(self.task_indices)}
        started = {t: 0 for t in need}
        done: list[Episode] = []
        active = []
        for i, slot in enumerate(self.slots):
            if started[slot.task_index] < need[slot.task_index]:
                started[slot.task_index] += 1
                self._begin(i)
                active.append(i)
        while active:
            for i, ep in self._step_all(active):
                done.append(ep)
                t = self.slots[i].task_index
                if started[t] < need[t]:
                    started[t] += 1
                    self._begin(i)
                else:
                    active.remove(i)
        for s in self.slots:
            s.current = None  # exploration-style collect after evaluate starts fresh
        self.cpu_s += time.process_time() - t0
        return done

    def counters(self) -> dict:
        return {"env_steps": self.env_steps, "episodes_dropped": self.episodes_dropped,
                "dropped_by_cause": dict(self.dropped_by_cause), "cpu_s": self.cpu_s}


def collect_expert(task: str, kind: str, episodes: int, seed: int) -> tuple[list[Episode], dict]:
    """Whole episodes from an expert source of `task`; returns (episodes, {"env_steps", "cpu_s",
    "episodes_dropped", "dropped_by_cause"}). Attempts the env fails are dropped and replaced (ExpertSource)."""
    t0 = time.process_time()
    source = make_expert(get_task(task), kind)
    eps = list(source.episodes(episodes, seed))
    return eps, {"env_steps": source.env_steps, "cpu_s": time.process_time() - t0,
                 "episodes_dropped": source.episodes_dropped, "dropped_by_cause": dict(source.dropped_by_cause)}


@dataclass
class EpisodeResult:
    """What the trainer logs of an episode a rollout service produced (the episode itself went to the store)."""

    task: str
    ret: float
    success: bool | None = None  # see Episode.success


class RolloutService(RolloutWorker):
    """A RolloutWorker as the trainer uses it: weights by the handle the learner published, episodes
    handed straight to the replay store (`replay.add`), a report of each call. In process, a handle
    is the weights themselves; on Ray (distributed/ray_executor.py) an object reference."""

    _handle = None  # the weights handle in use

    def _sync_weights(self, version: int, box: list) -> None:
        if box[0] is not self._handle:
            self.set_weights(version, box[0])
            self._handle = box[0]

    def _store(self, replay, episodes: list, offline: bool = False) -> int:
        """Hand `episodes` to the replay store; returns how many it acknowledged."""
        return replay.add(episodes, offline=offline)

    def collect_into(self, replay, min_steps: int, version: int, box: list, targets: dict | None = None) -> dict:
        """Explore for at least `min_steps` env steps; store the finished episodes; report them.
        `targets`: return targets to set first (see `set_targets`)."""
        self._sync_weights(version, box)
        self.set_targets(targets or {})
        before = self.counters()
        episodes = self.collect(min_steps)
        acknowledged = self._store(replay, episodes) if episodes else 0
        return {"episodes": [EpisodeResult(e.task, e.ret, e.success) for e in episodes], "acknowledged": acknowledged,
                "before": before, "after": self.counters(), "weights_version": self.weights_version}

    def evaluate_with(self, episodes_per_task: int, version: int, box: list, targets: dict | None = None) -> dict:
        """Evaluate with the given weights (and return targets); report the episodes' returns."""
        self._sync_weights(version, box)
        self.set_targets(targets or {})
        before = self.counters()
        episodes = self.evaluate(episodes_per_task)
        return {"episodes": [EpisodeResult(e.task, e.ret, e.success) for e in episodes], "before": before,
                "after": self.counters(), "weights_version": self.weights_version}

    def collect_expert_into(self, replay, task: str, kind: str, episodes: int, seed: int) -> tuple[int, dict]:
        """Expert episodes of `task` into the replay store (offline); returns (episodes stored,
        collect_expert's counters)."""
        eps, counts = collect_expert(task, kind, episodes, seed)
        return self._store(replay, eps, offline=True), counts

    def pid(self) -> int:
        return os.getpid()
