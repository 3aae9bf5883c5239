"""The in-process executor (`frontier train --serial`): the trainer's components as plain objects
in this process, each call run when it is waited for, in the order the calls were made.

    summary = Trainer(cfg, run_dir, LocalExecutor()).run()     # distributed/trainer.py
"""
from __future__ import annotations

import contextlib
import signal
import threading

import numpy as np
import torch

from frontier.distributed.config import RunConfig
from frontier.distributed.executor import (Handle, LearnerHandle, LearnerSpec, ReplayHandle, RolloutHandle,
                                           RolloutSpec)
from frontier.distributed.learner_service import LearnerService
from frontier.distributed.replay import ReplayStore
from frontier.distributed.rollout import RolloutService
from frontier.distributed.threads import ThreadGovernor


@contextlib.contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM that arrive inside until it ends, then deliver the first (main
    thread only; a signal this process ignores stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler not in (signal.SIG_IGN, None):
            previous[sig] = handler
            signal.signal(sig, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if arrived:
            signal.raise_signal(arrived[0])


class Call:
    """A call made and not yet run (`done` False), or its result or error. An `atomic` call (one
    to the learner) runs to its end through Ctrl-C and SIGTERM, which arrive right after it: its
    updates are then booked and checkpointed, as on Ray, where the learner actor finishes the
    train call in flight."""

    def __init__(self, fn, args: tuple, atomic: bool):
        self.fn, self.args, self.atomic = fn, args, atomic
        self.done, self.result, self.error = False, None, None

    def run(self) -> None:
        with signals_held() if self.atomic else contextlib.nullcontext():
            try:
                self.result = self.fn(*self.args)
            except Exception as e:
                self.error = e
            self.done = True
            self.fn = self.args = None


class GovernedLearner(LearnerService):
    """The learner service sharing this process's cores with the rollouts and whatever else runs on
    the machine: each train call first sizes torch's thread pool to the cores left free."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads = ThreadGovernor(max_threads=torch.get_num_threads())

    def train(self, n: int, max_flops: float | None = None) -> dict:
        self.threads.tick()
        return super().train(n, max_flops)


class LocalExecutor:
    """Executor of a run in this process (distributed/executor.py: Executor)."""

    remote = False
    LOST: tuple = ()  # nothing here is lost without the run failing
    TASK_ERROR: tuple = ()

    def __init__(self):
        self._queue: list[Call] = []  # calls made and not yet run, oldest first

    def connect(self, cfg: RunConfig) -> None:
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)

    def connected(self) -> bool:
        return True

    def shutdown(self) -> None:
        self._queue.clear()

    # -- placement -----------------------------------------------------------------------

    def replay_store(self, *args, **kwargs) -> ReplayHandle:
        return ReplayHandle(self, ReplayStore(*args, **kwargs))

    def learner_service(self, replay: ReplayHandle, spec: LearnerSpec) -> LearnerHandle:
        # Batches sampled when needed (prefetch=0): one thread, each batch sees the data added before it.
        return LearnerHandle(self, spec.build(GovernedLearner, replay.target.sample, lambda weights: weights,
                                              prefetch=0))

    def rollout_service(self, spec: RolloutSpec) -> RolloutHandle:
        return RolloutHandle(self, self.local_service(spec))

    def local_service(self, spec: RolloutSpec) -> RolloutService:
        return spec.build(RolloutService)

    # -- calls ---------------------------------------------------------------------------

    def _call(self, target, fn, *args) -> Call:
        """Queue `fn` (a component's method) of `target`, the target's own override of it."""
        c = Call(getattr(target, fn.__name__), args, atomic=isinstance(target, LearnerService))
        self._queue.append(c)
        return c

    def _run_next(self) -> bool:
        if not self._queue:
            return False
        self._queue.pop(0).run()
        return True

    def wait(self, calls: list, num_returns: int = 1, timeout: float | None = None) -> tuple[list, list]:
        """Run calls, oldest first, until `num_returns` of `calls` are done; (done, not done), each in
        the order given."""
        while sum(c.done for c in calls) < num_returns and self._run_next():
            pass
        done = [c for c in calls if c.done][:num_returns]
        return done, [c for c in calls if c not in done]

    def get(self, c: Call, timeout: float | None = None):
        while not c.done:
            if not self._run_next():
                raise RuntimeError("a call was cancelled before it ran")
        if c.error is not None:
            raise c.error
        return c.result

    def cancel(self, c: Call) -> None:
        if c in self._queue:
            self._queue.remove(c)

    def kill(self, handle: Handle, restart: bool) -> None:
        raise NotImplementedError("nothing in process is killed: its faults fail the run")

    def dead(self, handle: Handle) -> bool:
        return False

    def actor_state(self, handle: Handle) -> str:
        return "ALIVE"

    def restarts(self, handle: Handle) -> int:
        return 0
