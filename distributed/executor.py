"""What the trainer needs of an executor, and the typed handles it gets back.

    ex = LocalExecutor()                     # distributed/local_executor.py, or RayExecutor(address)
    ex.connect(cfg)
    replay = ex.replay_store(infos, capacity, ...)           # ReplayHandle
    learner = ex.learner_service(replay, LearnerSpec(...))   # LearnerHandle
    explorer = ex.rollout_service(RolloutSpec(...))          # RolloutHandle
    call = learner.train(100, None)          # a call in flight: a Ray ObjectRef, or an in-process Call
    ready, _ = ex.wait([call], num_returns=1, timeout=1.0)
    result = ex.get(call)

A handle's methods are its component's methods (LearnerService, ReplayStore, RolloutService), each
one line that hands the component's own method to the executor's `_call`: no method is named by a
string, and a handle lists exactly the calls the trainer makes. `handle.target` is the component
itself: the Ray actor handle, or the object in process (what tests and the executor's
`kill`/`dead`/`actor_state`/`restarts` look at).

The components' constructor arguments are written once, in `LearnerSpec` and `RolloutSpec`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from frontier.distributed.learner_service import LearnerService
from frontier.distributed.replay import ReplayStore
from frontier.distributed.rollout import RolloutService

# A call in flight, as the executor hands it back: a Ray ObjectRef, or an in-process Call.
Future = Any


@dataclass(frozen=True)
class LearnerSpec:
    """The learner service's arguments, save the two functions each executor gives it (`sample`, `publish`)."""

    model_cfg: Any
    infos: Sequence[Any]
    learner_cfg: Any
    seed: int
    batch_size: int
    weights_every: int
    frozen_trunk: bool

    def build(self, make: Callable, sample: Callable, publish: Callable, **options):
        """`make(...)` with these arguments: make is LearnerService, a subclass, or a Ray actor class's `.remote`."""
        return make(self.model_cfg, self.infos, self.learner_cfg, self.seed, sample, publish, self.batch_size,
                    self.weights_every, frozen_trunk=self.frozen_trunk, **options)


@dataclass(frozen=True)
class RolloutSpec:
    """A rollout service's arguments: its tasks (None: all of the run's), the run's tasks, the model,
    the mode ("explore" or "eval"), its envs, the run's seed and the worker's index (its streams)."""

    all_tasks: Sequence[str]
    model_cfg: Any
    mode: str
    num_envs: int
    seed: int
    worker_index: int
    tasks: Sequence[str] | None = None

    def build(self, make: Callable):
        """`make(...)` with these arguments: make is RolloutService, a subclass, or a Ray actor class's `.remote`."""
        tasks = self.all_tasks if self.tasks is None else self.tasks
        return make(tasks, self.all_tasks, self.model_cfg, self.mode, self.num_envs, self.seed, self.worker_index)


class Handle:
    """A component placed by an executor: `target` (the actor or object) and the executor carrying its calls."""

    __slots__ = ("target", "_ex")

    def __init__(self, executor: Executor, target: Any):
        self.target = target
        self._ex = executor

    def _call(self, fn: Callable, *args) -> Future:
        return self._ex._call(self.target, fn, *args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"


class ReplayHandle(Handle):
    """The replay store's calls the trainer makes (distributed/replay.py: ReplayStore)."""

    def restore(self, strict: bool) -> Future: return self._call(ReplayStore.restore, strict)
    def holdout(self) -> Future: return self._call(ReplayStore.holdout)
    def rng_state(self) -> Future: return self._call(ReplayStore.rng_state)
    def set_rng_state(self, state: dict) -> Future: return self._call(ReplayStore.set_rng_state, state)
    def set_task_weights(self, weights: dict) -> Future: return self._call(ReplayStore.set_task_weights, weights)
    def episodes(self, task: str) -> Future: return self._call(ReplayStore.episodes, task)
    def stats(self) -> Future: return self._call(ReplayStore.stats)


class LearnerHandle(Handle):
    """The learner service's calls the trainer makes (distributed/learner_service.py: LearnerService)."""

    def train(self, n: int, max_flops: float | None) -> Future: return self._call(LearnerService.train, n, max_flops)
    def set_holdout(self, batch, every: int, keep_best: bool) -> Future:
        return self._call(LearnerService.set_holdout, batch, every, keep_best)
    def best(self) -> Future: return self._call(LearnerService.best)
    def publish(self, best: bool = False) -> Future: return self._call(LearnerService.publish, best)
    def weights(self) -> Future: return self._call(LearnerService.weights)
    def set_observation_stats(self, stats: dict) -> Future:
        return self._call(LearnerService.set_observation_stats, stats)
    def set_return_stats(self, stats: dict) -> Future: return self._call(LearnerService.set_return_stats, stats)
    def init_from(self, run_dir: str, task_map: dict | None) -> Future:
        return self._call(LearnerService.init_from, run_dir, task_map)
    def save(self, directory: str) -> Future: return self._call(LearnerService.save, directory)
    def load(self, directory: str) -> Future: return self._call(LearnerService.load, directory)
    def export_weights(self, path: str, best: bool = False) -> Future:
        return self._call(LearnerService.export_weights, path, best)
    def stop(self) -> Future: return self._call(LearnerService.stop)


class RolloutHandle(Handle):
    """A rollout service's calls the trainer makes (distributed/rollout.py: RolloutService); the
    replay store goes to it as the store itself, which it writes into."""

    def collect_into(self, replay: ReplayHandle, min_steps: int, version: int, box: list,
                     targets: dict | None = None) -> Future:
        return self._call(RolloutService.collect_into, replay.target, min_steps, version, box, targets)
    def evaluate_with(self, episodes_per_task: int, version: int, box: list, targets: dict | None,
                      evaluation: int) -> Future:
        return self._call(RolloutService.evaluate_with, episodes_per_task, version, box, targets, evaluation)
    def collect_expert_into(self, replay: ReplayHandle, task: str, kind: str, episodes: int, seed: int) -> Future:
        return self._call(RolloutService.collect_expert_into, replay.target, task, kind, episodes, seed)
    def pid(self) -> Future: return self._call(RolloutService.pid)


@runtime_checkable
class Executor(Protocol):
    """Places the trainer's components and carries the calls to them (distributed/trainer.py)."""

    remote: bool  # whether calls run elsewhere, at once (Ray), or here when waited for (in process)
    LOST: tuple | type  # except ex.LOST: the call's actor died (its process, its node)
    TASK_ERROR: tuple | type  # isinstance(e, ex.TASK_ERROR): raised inside a call whose actor is up

    # -- the run's connection ---------------------------------------------------------------
    def connect(self, cfg) -> None:
        """ex.connect(cfg): set up (Ray: attach or start an instance; in process: seed torch and numpy)."""
    def connected(self) -> bool:
        """if ex.connected(): calls can still be made."""
    def shutdown(self) -> None:
        """ex.shutdown(): drop what connect set up."""

    # -- placement ----------------------------------------------------------------------------
    def replay_store(self, *args, **kwargs) -> ReplayHandle:
        """replay = ex.replay_store(infos, capacity, ...): a ReplayStore(*args, **kwargs)."""
    def learner_service(self, replay: ReplayHandle, spec: LearnerSpec) -> LearnerHandle:
        """learner = ex.learner_service(replay, LearnerSpec(...)): a learner sampling from `replay`."""
    def rollout_service(self, spec: RolloutSpec) -> RolloutHandle:
        """explorer = ex.rollout_service(RolloutSpec(...)): a rollout service (Ray: an actor restarted when it dies)."""
    def local_service(self, spec: RolloutSpec) -> RolloutService:
        """worker = ex.local_service(spec): a plain in-driver rollout service, called directly (blocking)."""

    # -- calls ----------------------------------------------------------------------------------
    def _call(self, target, fn: Callable, *args) -> Future:
        """ex._call(target, RolloutService.pid): what handles use; calls `target`'s own `fn` with `args`."""
    def wait(self, calls: list, num_returns: int = 1, timeout: float | None = None) -> tuple[list, list]:
        """ready, rest = ex.wait(calls, num_returns=1, timeout=1.0): as ray.wait."""
    def get(self, call: Future, timeout: float | None = None) -> Any:
        """result = ex.get(call): its result, or its error raised."""
    def cancel(self, call: Future) -> None:
        """ex.cancel(call): drop a call not yet done (Ray: it fails with TaskCancelledError)."""

    # -- actors ---------------------------------------------------------------------------------
    def kill(self, handle: Handle, restart: bool) -> None:
        """ex.kill(explorer, restart=True): end the actor's process (Ray restarts it if `restart`)."""
    def dead(self, handle: Handle) -> bool:
        """if ex.dead(learner): a no-op call to it fails (a busy actor is alive)."""
    def actor_state(self, handle: Handle) -> str:
        """ex.actor_state(explorer) in ("ALIVE", "RESTARTING", "DEAD", ...)."""
    def restarts(self, handle: Handle) -> int:
        """ex.restarts(explorer): how many times it was restarted."""
