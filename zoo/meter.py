"""What producing an expert cost: CPU-seconds of this process and its descendants, library versions."""
from __future__ import annotations

import os
import platform
from pathlib import Path


class TreeCPU:
    """CPU-seconds of this process and all its descendants (Ray GCS, raylet, workers).

    Read from /proc (Linux): each sample records every live descendant's utime+stime; a
    process's last sample counts, so CPU a descendant spends after its last sample is
    missed. Where /proc is absent only this process (and reaped children) is counted.
    """

    how = "utime+stime of this process and its descendants from /proc, sampled every training iteration"

    def __init__(self):
        self.seen: dict[int, float] = {}  # pid -> latest cumulative CPU-seconds
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _stat(self, pid: int) -> tuple[int, float] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        rest = text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) "
        return int(rest[1]), (int(rest[11]) + int(rest[12])) / self.tick  # ppid, utime+stime

    def sample(self) -> float:
        """Total CPU-seconds so far."""
        me = os.getpid()
        if not Path("/proc").is_dir():
            t = os.times()
            return t.user + t.system + t.children_user + t.children_system
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                s = self._stat(int(entry))
                if s is not None:
                    stats[int(entry)] = s
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        todo = [me]
        while todo:
            pid = todo.pop()
            if pid in stats:
                self.seen[pid] = stats[pid][1]
            todo.extend(children.get(pid, []))
        return sum(self.seen.values())


def library_versions() -> dict:
    import gymnasium
    import ray
    import torch

    versions = {"python": platform.python_version(), "ray": ray.__version__, "torch": torch.__version__,
                "gymnasium": gymnasium.__version__}
    try:
        import mujoco

        versions["mujoco"] = mujoco.__version__
    except ImportError:
        versions["mujoco"] = None
    return versions
