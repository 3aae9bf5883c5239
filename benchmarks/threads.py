"""Learner updates under CPU contention: torch intra-op threads and the OpenMP wait policy.

Each setting runs in a fresh subprocess (OpenMP reads its wait policy once, when it starts) beside
0, 1 or 2 competing CPU-bound processes (Python busy loops), and times `Learner.step` of the
default model (ModelConfig(), batch 64, K=20) on random data. Reported per setting and load: the
median update time, and its ratio to one thread's at the same load, measured in the same run.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import markdown_table, write_results

# name -> (torch intra-op threads, extra environment of the process)
SETTINGS = {
    "1 thread": (1, {}),
    "2 threads, OpenMP's default wait (spins)": (2, {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
}
LOADS = (0, 1, 2)  # competing busy processes

_MEASURE = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from agents.learner import Learner, LearnerConfig
from agents.model import ModelConfig
from agents.spaces import Box, TaskInfo
from agents.trajectory import Episode, make_batch, sample_windows
rng = np.random.default_rng(0)
task = TaskInfo("vec", Box((11,)), Box((3,)))
eps = [Episode("vec", rng.normal(size=(200, 11)).astype(np.float32), rng.uniform(-1, 1, (200, 3)).astype(np.float32),
               rng.normal(size=200).astype(np.float32), True) for _ in range(20)]
lengths = np.array([e.length for e in eps])
learner = Learner(ModelConfig(), [task], LearnerConfig(device="cpu"), seed=0)
batches = [make_batch([eps[i] for i in idx], starts, 20, [task])
           for idx, starts in (sample_windows(lengths, 64, rng) for _ in range(4))]
times = []
for k in range(int(sys.argv[2])):
    t = time.perf_counter()
    learner.step(batches[k % 4])
    times.append(time.perf_counter() - t)
print(json.dumps(times[3:]))
"""


def _busy() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _measure(threads: int, env: dict, updates: int) -> list[float]:
    root = Path(__file__).resolve().parent.parent
    full_env = {**os.environ, "PYTHONPATH": str(root), **env}
    for key in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY"):  # the setting decides
        full_env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(threads), str(updates)], env=full_env, cwd=root,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool, out: Path) -> dict:
    updates = 8 if quick else 40
    results = {}
    for load in LOADS:
        competitors = [_busy() for _ in range(load)]
        try:
            time.sleep(0.5)
            for name, (threads, env) in SETTINGS.items():
                times = _measure(threads, env, updates)
                results.setdefault(name, {})[load] = {"median_ms": 1e3 * statistics.median(times),
                                                      "max_ms": 1e3 * max(times), "updates": len(times)}
                print(f"  load {load}: {name}: {results[name][load]['median_ms']:.0f} ms", flush=True)
        finally:
            for p in competitors:
                p.kill()
                p.wait()
    one = results["1 thread"]
    rows = [[name, *(f"{r[load]['median_ms']:.0f} ms (max {r[load]['max_ms']:.0f}; "
                     f"{r[load]['median_ms'] / one[load]['median_ms']:.2f}x of 1 thread)" for load in LOADS)]
            for name, r in results.items()]
    md = ("Median learner update (default model 128/3/4, batch 64, K=20, CPU) per torch thread setting, with "
          "0, 1 and 2 competing busy processes on the machine, each setting in a fresh process, measured "
          f"side by side in one run ({updates - 3} timed updates each):\n\n"
          + markdown_table(["setting", *(f"{n} competing" for n in LOADS)], rows) + "\n")
    print(md, flush=True)
    return write_results(out, "threads", {"updates": updates, "results": results}, md)
