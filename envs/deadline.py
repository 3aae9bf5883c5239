"""A deadline on every env step and reset, so a hung environment costs its episode, not the run.

    env = StepDeadline(env, seconds=60.0)
    env.step(action)   # raises StepTimeout if the call takes longer than 60 s

The deadline is a SIGALRM timer armed around each call (about 2 us a step). Signals reach only
the main thread of a process, which is where the serial runner and Ray actors step their envs;
in any other thread the wrapper calls straight through. It also cannot interrupt C code that
never returns to the interpreter; a hang in Python code or in a blocking wait (sleep, a socket, a
lock) is interrupted. A process whose SIGALRM is already taken by someone else keeps its handler,
and its envs get no deadline.
"""
from __future__ import annotations

import signal
import threading

import gymnasium as gym


class StepTimeout(TimeoutError):
    """An env step or reset ran past its deadline."""


def fault_cause(error: BaseException) -> str:
    """How an env call failed, for the per-cause fault counts: "hung" (ran past its deadline),
    "non_finite" (returned NaN or inf: the env boundaries raise FloatingPointError), or "raised"."""
    if isinstance(error, StepTimeout):
        return "hung"
    return "non_finite" if isinstance(error, FloatingPointError) else "raised"


def _on_alarm(signum, frame):
    raise StepTimeout("env call ran past its deadline")


def _armable() -> bool:
    """True in the main thread once our SIGALRM handler is installed (installing it if free)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(signal.SIGALRM)
    if handler is _on_alarm:
        return True
    if handler not in (signal.SIG_DFL, None):
        return False
    signal.signal(signal.SIGALRM, _on_alarm)
    return True


class StepDeadline(gym.Wrapper):
    """Raises StepTimeout from a `step` or `reset` that takes longer than `seconds`."""

    def __init__(self, env: gym.Env, seconds: float):
        super().__init__(env)
        if seconds <= 0:
            raise ValueError(f"step deadline must be > 0 seconds, got {seconds}")
        self.seconds = float(seconds)

    def _call(self, fn, *args, **kwargs):
        if not _armable():
            return fn(*args, **kwargs)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def step(self, action):
        return self._call(self.env.step, action)

    def reset(self, **kwargs):
        return self._call(self.env.reset, **kwargs)
