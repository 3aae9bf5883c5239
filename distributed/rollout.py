"""RolloutWorker: steps many environments of any mix of tasks with one batched policy forward
per step, and returns whole finished episodes.

A plain class; `RolloutService` adds the calls the trainer makes of a rollout actor, in process
(distributed/local_executor.py) or as a Ray actor (distributed/ray_executor.py). Modes:
- "explore": the current ODT policy, sampled actions, exploration return targets;
  environments persist across `collect` calls, so episodes span calls and none is cut.
- "eval": deterministic actions, evaluation return targets; `evaluate` starts fresh episodes.
Expert collection (any expert source) is `collect_expert`.

The environments are an envs.env_pool.EnvPool, the fault boundary expert sources use too: an env
that raises, hangs or returns a non-finite value costs that episode only (dropped, counted, the env
rebuilt, the worker goes on); a broken env ends the call with a RuntimeError, never a hang.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import torch

from frontier.agents.model import DecisionTransformer, ModelConfig
from frontier.agents.policy import Policy
from frontier.agents.trajectory import Episode
from frontier.envs.env_pool import EnvPool, Tally
from frontier.envs.registry import get_task, make_expert
from frontier.envs.seeding import stream_seed


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
        # The learner's weights replace the random initial ones; drawing those must leave the
        # process's global generator alone: in a serial run it is the learner's (dropout, entropy
        # samples), and a resumed run builds its workers at another point of its stream.
        with torch.random.fork_rng(devices=[]):
            self.model = DecisionTransformer(model_cfg, infos)
        self.policy = Policy(self.model, infos, num_envs, seed=stream_seed("policy", seed, worker=worker_index))
        self.weights_version = -1
        self.targets: dict[int, float | None] = {}  # task index -> return target replacing the spec's (see set_targets)
        self.num_envs = num_envs
        self.seed = seed
        self.tally = Tally()  # env steps and dropped episodes, counted by the pool
        self.cpu_s = 0.0
        # Distinct, reproducible env seeds per worker and slot: each env built takes the next one.
        self.pool = EnvPool(self.specs, [self.task_indices[i % len(self.task_indices)] for i in range(num_envs)],
                            seed_base=stream_seed(mode, seed, worker=worker_index), tally=self.tally)

    # -- weights -------------------------------------------------------------------------

    def set_weights(self, version: int, weights: dict) -> None:
        """Act with `weights` from now on; `version` (the learner's update count) labels the episodes."""
        self.policy.load_weights(weights)
        self.weights_version = version

    def set_targets(self, targets: dict[str, float | None]) -> None:
        """Condition episodes started from now on on these returns ({task name: target}; None: the
        model's return head's prediction for each episode's first observation) instead of the
        tasks' own targets for this worker's mode."""
        names = [s.name for s in self.specs]
        self.targets.update({names.index(t): None if v is None else float(v) for t, v in targets.items()})

    # -- stepping ------------------------------------------------------------------------

    def _begin(self, i: int, reset_seed: int | None = None) -> bool:
        """Start a new episode in env i (from reset(seed=reset_seed) if given), conditioned on its
        task's return target for this mode; False if that seeded reset failed (nothing started)."""
        if self.pool.begin(i, reset_seed=reset_seed) is None and reset_seed is not None:
            return False
        task = self.pool.task_index(i)
        self.policy.reset(i, task, self.targets.get(task, self.specs[task].return_target(self.mode)))
        return True

    def _step_all(self, active: list[int]) -> list[tuple[int, Episode]]:
        """One step of every active env (one batched policy forward); returns finished (env, episode)
        pairs, whose next episode the caller begins. An env whose episode failed begins a new one."""
        actions = self.policy.act(active, [self.pool.current(i) for i in active], deterministic=self.mode == "eval")
        stepped, rewards, finished, failed = self.pool.step(active, actions)
        self.policy.rewards(stepped, rewards)
        for i in failed:
            self._begin(i)
        for _, episode in finished:
            episode.source = {"kind": self.mode, "policy": f"odt@{self.weights_version}", **episode.source}
        return finished

    # -- modes ---------------------------------------------------------------------------

    def collect(self, min_steps: int) -> list[Episode]:
        """Exploration: step all envs until at least `min_steps` env steps; return finished episodes."""
        t0 = time.process_time()
        for i in range(self.num_envs):
            if self.pool.current(i) is None:
                self._begin(i)
        done: list[Episode] = []
        start = self.tally.env_steps
        active = list(range(self.num_envs))
        while self.tally.env_steps - start < min_steps:
            for i, ep in self._step_all(active):
                done.append(ep)
                self._begin(i)
        self.cpu_s += time.process_time() - t0
        return done

    def evaluate(self, episodes_per_task: int, evaluation: int = 0) -> list[Episode]:
        """Evaluation: fresh episodes until every task of this worker has `episodes_per_task`.
        Evaluation number `evaluation` of a run plays the same episodes wherever it runs (any eval
        worker, the driver, a resumed run): each starts from reset(seed=...) of the task's stream
        for that number (a seeded reset that fails takes the stream's next seed)."""
        t0 = time.process_time()
        need = {t: episodes_per_task for t in set(self.task_indices)}
        started = {t: 0 for t in need}
        seeds = {t: stream_seed("eval", self.seed, self.specs[t].name, worker=evaluation) for t in need}
        done: list[Episode] = []
        active = []

        def begin(i: int) -> None:
            t = self.pool.task_index(i)
            while not self._begin(i, reset_seed=seeds[t]):
                seeds[t] += 1
            seeds[t] += 1
            started[t] += 1

        for i in range(self.num_envs):
            if started[self.pool.task_index(i)] < need[self.pool.task_index(i)]:
                begin(i)
                active.append(i)
        while active:
            for i, ep in self._step_all(active):
                done.append(ep)
                if started[self.pool.task_index(i)] < need[self.pool.task_index(i)]:
                    begin(i)
                else:
                    active.remove(i)
        for i in range(self.num_envs):
            self.pool.drop_episode(i)  # exploration-style collect after evaluate starts fresh
        self.cpu_s += time.process_time() - t0
        return done

    def counters(self) -> dict:
        t = self.tally
        return {"env_steps": t.env_steps, "episodes_dropped": t.episodes_dropped,
                "dropped_by_cause": dict(t.dropped_by_cause), "cpu_s": self.cpu_s}


def collect_expert(task: str, kind: str, episodes: int, seed: int) -> tuple[list[Episode], dict]:
    """Whole episodes from an expert source of `task`; returns (episodes, {"env_steps", "cpu_s",
    "episodes_dropped", "dropped_by_cause"}). Attempts the env fails are dropped and replaced (ExpertSource)."""
    t0 = time.process_time()
    source = make_expert(get_task(task), kind)
    eps = list(source.episodes(episodes, seed))
    t = source.tally
    return eps, {"env_steps": t.env_steps, "cpu_s": time.process_time() - t0,
                 "episodes_dropped": t.episodes_dropped, "dropped_by_cause": dict(t.dropped_by_cause)}


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

    def evaluate_with(self, episodes_per_task: int, version: int, box: list, targets: dict | None = None,
                      evaluation: int = 0) -> dict:
        """Evaluate with the given weights (and return targets) as the run's evaluation number
        `evaluation` (see `evaluate`); report the episodes' returns."""
        self._sync_weights(version, box)
        self.set_targets(targets or {})
        before = self.counters()
        episodes = self.evaluate(episodes_per_task, evaluation)
        return {"episodes": [EpisodeResult(e.task, e.ret, e.success) for e in episodes], "before": before,
                "after": self.counters(), "weights_version": self.weights_version}

    def collect_expert_into(self, replay, task: str, kind: str, episodes: int, seed: int) -> tuple[int, dict]:
        """Expert episodes of `task` into the replay store (offline); returns (episodes stored,
        collect_expert's counters)."""
        eps, counts = collect_expert(task, kind, episodes, seed)
        return self._store(replay, eps, offline=True), counts

    def pid(self) -> int:
        return os.getpid()
