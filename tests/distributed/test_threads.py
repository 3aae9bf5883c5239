"""The thread governor: torch's pool sized to the cores other processes leave free."""
import subprocess
import sys
import time

import pytest
import torch

from frontier.distributed import threads
from frontier.distributed.threads import ThreadGovernor


def test_free_cores_subtracts_this_process_from_the_machine():
    # 10 s on 2 CPUs; the machine used 14 CPU-s, this process 4 of them: the others used one core.
    assert ThreadGovernor.free_cores(2, 10.0, 14.0, 4.0) == pytest.approx(1.0)
    assert ThreadGovernor.free_cores(2, 10.0, 4.0, 4.0) == pytest.approx(2.0)


def test_the_pool_shrinks_beside_a_busy_process_and_grows_back(monkeypatch):
    """Fed /proc/stat readings of another process taking one of two cores, then none."""
    clock = {"t": 0.0, "busy": 0.0}
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(threads, "_read_stat", lambda: (clock["busy"], 2))
    monkeypatch.setattr(threads, "_own_busy_s", lambda: 0.0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        governor = ThreadGovernor(max_threads=2, every_s=5.0)
        clock.update(t=6.0, busy=6.0)  # another process kept one core busy
        assert governor.tick() == 1 and torch.get_num_threads() == 1
        clock.update(t=9.0, busy=9.0)  # not yet time to look again
        assert governor.tick() == 1
        clock.update(t=20.0, busy=9.0)  # idle since
        assert governor.tick() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_real_busy_process_is_seen():
    """On the real /proc/stat: a busy loop in another process takes about one core."""
    if threads._read_stat() is None:
        pytest.skip("no /proc/stat")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        t0, (m0, cpus), o0 = time.monotonic(), threads._read_stat(), threads._own_busy_s()
        time.sleep(2.0)
        t1, (m1, _), o1 = time.monotonic(), threads._read_stat(), threads._own_busy_s()
    finally:
        busy.kill()
        busy.wait()
    others = cpus - ThreadGovernor.free_cores(cpus, t1 - t0, m1 - m0, o1 - o0)
    assert others >= 0.8  # the busy loop (plus whatever else runs here)
