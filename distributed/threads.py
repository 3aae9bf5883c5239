"""Torch intra-op threads sized to the cores other processes leave free.

    governor = ThreadGovernor(max_threads=torch.get_num_threads())
    for update in ...:
        governor.tick()          # re-sizes the thread pool at most every `every_s` seconds
        learner.step(batch)

Two threads beside one busy process on two cores make an update 2.45x slower than one thread
(benchmarks/results/threads.md): OpenMP's threads wait on each other while the other process
holds a core. The governor reads the machine's busy time from /proc/stat, subtracts this
process's own, and uses as many threads as there are cores the others leave idle (at least 1,
at most `max_threads`). Where /proc/stat is missing (not Linux) it leaves the pool alone.
"""
from __future__ import annotations

import os
import time

import torch

PROC_STAT = "/proc/stat"


def _read_stat() -> tuple[float, int] | None:
    """(seconds of CPU time all processes have used since boot, CPUs counted), or None without
    /proc/stat."""
    try:
        with open(PROC_STAT) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    # "cpu user nice system idle iowait irq softirq steal ...": busy is all but idle and iowait
    ticks = [int(x) for x in lines[0].split()[1:9]]
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), cpus


def _own_busy_s() -> float:
    t = os.times()
    return t.user + t.system


class ThreadGovernor:
    """Sets torch's intra-op threads to the cores other processes leave free, re-measured every `every_s`."""

    def __init__(self, max_threads: int, every_s: float = 5.0):
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads}")
        self.max_threads = max_threads
        self.every_s = every_s
        self.threads = torch.get_num_threads()
        self._last = self._sample()

    def _sample(self) -> tuple[float, tuple[float, int] | None, float]:
        return time.monotonic(), _read_stat(), _own_busy_s()

    @staticmethod
    def free_cores(cpus: int, elapsed_s: float, machine_busy_s: float, own_busy_s: float) -> float:
        """Cores of `cpus` the other processes left idle over `elapsed_s` seconds in which the
        machine used `machine_busy_s` of CPU time and this process `own_busy_s`."""
        return cpus - max(0.0, machine_busy_s - own_busy_s) / elapsed_s

    def tick(self) -> int:
        """Re-size the pool if `every_s` has passed; returns the thread count in use."""
        if self.max_threads == 1:
            return self.threads
        now = self._sample()
        elapsed = now[0] - self._last[0]
        if elapsed < self.every_s or now[1] is None or self._last[1] is None:
            return self.threads
        (busy, cpus), (busy_before, _) = now[1], self._last[1]
        free = self.free_cores(cpus, elapsed, busy - busy_before, now[2] - self._last[2])
        self._last = now
        threads = max(1, min(self.max_threads, int(free + 0.5)))
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
        return self.threads
