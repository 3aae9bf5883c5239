"""Learner updates under CPU contention: torch intra-op threads, the OpenMP wait policy, and the
thread governor (distributed/threads.py) that the serial runner uses.

Each setting runs in a fresh subprocess (OpenMP reads its wait policy once, when it starts) beside
0, 1 or 2 competing CPU-bound processes (Python busy loops), and times `Learner.step` of the
default model (ModelConfig(), batch 64, K=20) on random data. Reported per setting and load: the
median update time, and its ratio to one thread's at the same load, measured in the same run.
Then the serial quick run (`frontier train configs/quick.yaml --serial`, two threads by default)
cut to QUICK_RUN_UPDATES (offline, online) updates, with the governor and with it switched off, at
each load: its wall time (expert collection, updates, exploration and one final evaluation episode).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from frontier.benchmarks.common import markdown_table, write_results

# name -> (torch intra-op threads, extra environment of the process)
SETTINGS = {
    "1 thread": (1, {}),
    "2 threads, OpenMP's default wait (spins)": (2, {}),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "governed (at most 2 threads)": (2, {"GOVERNED": "1"}),
}
GOVERNED = "governed (at most 2 threads)"
LOADS = (0, 1, 2)  # competing busy processes

_MEASURE = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from frontier.agents.learner import Learner, LearnerConfig
from frontier.agents.model import ModelConfig
from frontier.agents.spaces import Box, TaskInfo
from frontier.agents.trajectory import Episode, make_batch, sample_windows
rng = np.random.default_rng(0)
task = TaskInfo("vec", Box((11,)), Box((3,)))
eps = [Episode("vec", rng.normal(size=(200, 11)).astype(np.float32), rng.uniform(-1, 1, (200, 3)).astype(np.float32),
               rng.normal(size=200).astype(np.float32), True) for _ in range(20)]
lengths = np.array([e.length for e in eps])
learner = Learner(ModelConfig(), [task], LearnerConfig(device="cpu"), seed=0)
batches = [make_batch([eps[i] for i in idx], starts, 20, [task])
           for idx, starts in (sample_windows(lengths, 64, 20, rng) for _ in range(4))]
import os
from frontier.distributed.threads import ThreadGovernor
governor = ThreadGovernor(int(sys.argv[1]), every_s=1.0) if os.environ.get("GOVERNED") else None
for k in range(8):  # warm-up, and the governor's first look at the machine
    learner.step(batches[k % 4])
    time.sleep(0.15)
    if governor:
        governor.tick()
times = []
for k in range(int(sys.argv[2])):
    if governor:
        governor.tick()
    t = time.perf_counter()
    learner.step(batches[k % 4])
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""

# The serial quick run cut short; argv: run dir, offline updates, online updates, governor "on"/"off".
_QUICK_RUN = r"""
import sys
from pathlib import Path
from frontier.benchmarks.learning import train
from frontier.distributed import threads
if sys.argv[4] == "off":
    threads.ThreadGovernor.tick = lambda self: self.threads
summary = train(Path("configs/quick.yaml"), [f"train.pretrain_updates={sys.argv[2]}", f"train.online_updates={sys.argv[3]}",
                                             "train.final_eval_episodes=1", "train.eval_every=100000"], Path(sys.argv[1]))
print("WALL", summary["wall_s"])
"""
QUICK_RUN_UPDATES = (400, 200)


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


def _quick_run(run_dir: Path, updates: tuple[int, int], governor: str) -> float:
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", _QUICK_RUN, str(run_dir), *map(str, updates), governor], env=env,
                         cwd=root, capture_output=True, text=True, check=True)
    return float(out.stdout.split("WALL")[-1].split()[0])


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
          f"side by side in one run ({updates} timed updates each):\n\n"
          + markdown_table(["setting", *(f"{n} competing" for n in LOADS)], rows) + "\n")

    # The serial quick run with and without the governor, at each load.
    cut = (40, 20) if quick else QUICK_RUN_UPDATES
    quick_runs: dict[str, dict[int, float]] = {"on": {}, "off": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for load in LOADS:
            competitors = [_busy() for _ in range(load)]
            try:
                for governor in ("off", "on"):
                    quick_runs[governor][load] = _quick_run(Path(tmp) / f"{governor}-{load}", cut, governor)
                    print(f"  load {load}: quick run, governor {governor}: {quick_runs[governor][load]:.0f} s",
                          flush=True)
            finally:
                for p in competitors:
                    p.kill()
                    p.wait()
    rows = [[f"governor {g}" + (" (fixed 2 threads)" if g == "off" else ""),
             *(f"{quick_runs[g][load]:.0f} s" for load in LOADS)] for g in ("off", "on")]
    md += (f"\nThe serial quick run (`configs/quick.yaml --serial`, torch's default of one thread per core) cut to "
           f"{cut[0]} offline + {cut[1]} online updates, wall time of the whole run (expert collection, updates, "
           "exploration, one final evaluation episode per task), with the thread governor off (the pool fixed at "
           "two threads) and on, side by side in one run:\n\n"
           + markdown_table(["serial quick run", *(f"{n} competing" for n in LOADS)], rows) + "\n")
    print(md, flush=True)
    return write_results(out, "threads", {"updates": updates, "results": results, "quick_run_updates": list(cut),
                                          "quick_run_wall_s": quick_runs}, md)
