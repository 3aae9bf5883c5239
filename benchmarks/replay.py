"""Replay benchmark: episodes inserted per second, batch-sample latency (batch 256, K=20) at 1M
stored timesteps across 8 tasks, memory per stored timestep, and learner utilization in a full
Ray run of configs/quick.yaml.

The 8 tasks have the shapes of real ones (observation size, action space, episode length):
Hopper, HalfCheetah, Walker2d, Ant, InvertedPendulum, Pendulum, CartPole and Breakout-RAM, with
synthetic contents. Writers add episodes in chunks of 8, as rollout workers do.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.spaces import Box, Discrete, TaskInfo
from agents.trajectory import Episode
from benchmarks.common import machine, markdown_table, median, write_results
from distributed.replay import ReplayStore

UTILIZATION_TARGET = 0.9  # learner utilization in a full Ray run on CPU (issue 6)
K = 20
BATCH = 256
CHUNK = 8  # episodes per add call
REPO = Path(__file__).resolve().parent.parent

# name, observation size, action (int: Discrete(n); tuple: Box), episode length range
TASKS = (
    ("Hopper-v5", 11, (3,), (200, 1000)),
    ("HalfCheetah-v5", 17, (6,), (1000, 1000)),
    ("Walker2d-v5", 17, (6,), (200, 1000)),
    ("Ant-v5", 105, (8,), (200, 1000)),
    ("InvertedPendulum-v5", 4, (1,), (50, 1000)),
    ("Pendulum-v1", 3, (1,), (200, 200)),
    ("CartPole-v1", 4, 2, (20, 500)),
    ("ALE/Breakout-ram-v5", 128, 4, (200, 2000)),
)


def _infos() -> list[TaskInfo]:
    return [TaskInfo(name, Box((obs,)), Discrete(act) if isinstance(act, int) else Box(act))
            for name, obs, act, _ in TASKS]


def _episode(task: tuple, rng: np.random.Generator) -> Episode:
    name, obs, act, (lo, hi) = task
    T = int(rng.integers(lo, hi + 1))
    actions = rng.integers(0, act, T) if isinstance(act, int) else rng.uniform(-1, 1, (T, *act)).astype(np.float32)
    return Episode(task=name, observations=rng.standard_normal((T, obs)).astype(np.float32), actions=actions,
                   rewards=rng.uniform(0, 1, T).astype(np.float32), terminated=bool(rng.random() < 0.5))


def _chunks(n_steps: int, rng: np.random.Generator) -> list[list[Episode]]:
    """Chunks of CHUNK episodes, tasks round-robin, about `n_steps` timesteps in all."""
    chunks, total, k = [], 0, 0
    while total < n_steps:
        chunk = [_episode(TASKS[(k + j) % len(TASKS)], rng) for j in range(CHUNK)]
        k += CHUNK
        total += sum(e.length for e in chunk)
        chunks.append(chunk)
    return chunks


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _insert_rate(store: ReplayStore, chunks: list[list[Episode]]) -> tuple[float, float]:
    """(episodes/s, timesteps/s) adding `chunks` one add call each."""
    t = time.perf_counter()
    for c in chunks:
        store.add(c)
    dt = time.perf_counter() - t
    return sum(len(c) for c in chunks) / dt, sum(e.length for c in chunks for e in c) / dt


def _sample_latency(store: ReplayStore, n: int, chunks: list[list[Episode]] | None = None) -> list[float]:
    """Seconds per `store.sample(BATCH)`; with `chunks`, one chunk is added before each sample (its
    cached per-task view is then rebuilt inside the sample, as during online training)."""
    out = []
    for i in range(n):
        if chunks:
            store.add(chunks[i % len(chunks)])
        t = time.perf_counter()
        store.sample(BATCH)
        out.append(time.perf_counter() - t)
    return out


def _ray_run(timeout_s: float) -> dict:
    """`frontier train configs/quick.yaml` on Ray; its summary's throughput and wall time."""
    with tempfile.TemporaryDirectory(prefix="frontier-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "distributed.cli", "train", str(REPO / "configs" / "quick.yaml"), "--out", str(run_dir)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
        return {
            "command": "frontier train configs/quick.yaml (Ray)",
            "status": summary["status"],
            "learner_utilization": summary["throughput"]["learner_utilization"],
            "trained_timesteps_per_s": summary["throughput"]["trained_timesteps_per_s"],
            "env_steps_per_s": summary["throughput"]["env_steps_per_s"],
            "learner_updates": summary["learner_updates"],
            "wall_s": summary["wall_s"],
            "learner_device_s": summary["compute"]["learner_device_s"],
            "process_wall_s": wall,
            "normalized_scores": {k: v.get("normalized_score") for k, v in summary.get("tasks", {}).items()},
        }


def run(quick: bool, out: Path, ray_run: bool | None = None) -> dict:
    """Measure and write replay.json/.md into `out`. The Ray run (about 8 minutes of both cores)
    is part of the full benchmark only, unless `ray_run` says otherwise."""
    m = machine()
    ray_run = (not quick) if ray_run is None else ray_run
    rng = np.random.default_rng(0)
    n_steps = 40_000 if quick else 1_000_000
    n_samples = 10 if quick else 100
    infos = _infos()
    per_task = n_steps // len(TASKS)

    extra = _chunks(n_steps // 20, rng)  # inserted at capacity (every add then evicts)
    rss0 = _rss_bytes()  # the stored episodes are created from here on: RSS growth is what they cost
    chunks = _chunks(n_steps, rng)
    array_bytes = sum(e.observations.nbytes + e.actions.nbytes + e.rewards.nbytes for c in chunks for e in c)
    stored_steps = sum(e.length for c in chunks for e in c)
    store = ReplayStore(infos, capacity=per_task, offline_share=0.5, context_len=K, seed=0)
    fill_eps, fill_steps = _insert_rate(store, chunks)
    rss_fill = _rss_bytes() - rss0
    full_eps, full_steps = _insert_rate(store, extra)
    total = store.total_timesteps()
    print(f"  replay: {total:,} timesteps stored; filling {fill_eps:,.0f} episodes/s, at capacity {full_eps:,.0f}", flush=True)

    _sample_latency(store, 3)  # warm-up: per-task views built
    lat = _sample_latency(store, n_samples)
    lat_after_insert = _sample_latency(store, n_samples, extra)

    with tempfile.TemporaryDirectory(prefix="frontier-bench-replay-") as tmp:
        persisted = ReplayStore(infos, capacity=per_task, offline_share=0.5, context_len=K, directory=tmp, seed=0)
        some = chunks[: max(len(chunks) // 10, 1)]
        disk_eps, disk_steps = _insert_rate(persisted, some)
        disk_bytes = sum(p.stat().st_size for p in Path(tmp).glob("shard-*.npz"))
        disk_per_step = disk_bytes / sum(e.length for c in some for e in c)

    data = {
        "machine": m,
        "stored_timesteps": total,
        "tasks": [t[0] for t in TASKS],
        "batch_size": BATCH, "context_len": K, "episodes_per_add": CHUNK,
        "insert": {
            "filling_episodes_per_s": fill_eps, "filling_timesteps_per_s": fill_steps,
            "at_capacity_episodes_per_s": full_eps, "at_capacity_timesteps_per_s": full_steps,
            "persisted_episodes_per_s": disk_eps, "persisted_timesteps_per_s": disk_steps,
        },
        "sample_s": {"median": median(lat), "p90": float(np.percentile(lat, 90)),
                     "after_insert_median": median(lat_after_insert),
                     "after_insert_p90": float(np.percentile(lat_after_insert, 90)), "samples": n_samples},
        "memory": {"array_bytes_per_timestep": array_bytes / stored_steps,
                   "rss_bytes_per_timestep": rss_fill / stored_steps,
                   "disk_bytes_per_timestep": disk_per_step},
        "ray_run": _ray_run(timeout_s=1800) if ray_run else None,
        "utilization_target": UTILIZATION_TARGET,
        "command": "frontier bench replay" + (" --quick" if quick else ""),
    }
    md = _markdown(data)
    print(md, flush=True)
    return write_results(out, "replay", data, md)


def _markdown(d: dict) -> str:
    ins, s, mem = d["insert"], d["sample_s"], d["memory"]
    rows = [
        ["episodes inserted / s (filling, in memory)", ins["filling_episodes_per_s"], f"{ins['filling_timesteps_per_s']:,.0f} timesteps/s"],
        ["episodes inserted / s (at capacity, evicting)", ins["at_capacity_episodes_per_s"], f"{ins['at_capacity_timesteps_per_s']:,.0f} timesteps/s"],
        ["episodes inserted / s (persisted to disk, as in a run)", ins["persisted_episodes_per_s"], f"{ins['persisted_timesteps_per_s']:,.0f} timesteps/s"],
        [f"sample latency, batch {d['batch_size']}, K={d['context_len']} (ms)", s["median"] * 1e3, f"p90 {s['p90'] * 1e3:.2f} ms"],
        ["sample latency right after an insert (ms)", s["after_insert_median"] * 1e3, f"p90 {s['after_insert_p90'] * 1e3:.2f} ms"],
        ["memory per stored timestep, arrays (bytes)", mem["array_bytes_per_timestep"], "observations + actions + rewards"],
        ["memory per stored timestep, process RSS growth (bytes)", mem["rss_bytes_per_timestep"], "episodes created and stored: arrays, Python objects, allocator slack"],
        ["disk per stored timestep (bytes)", mem["disk_bytes_per_timestep"], "replay/ shards"],
    ]
    text = [f"{d['stored_timesteps']:,} timesteps stored across {len(d['tasks'])} tasks ({', '.join(d['tasks'])}); "
            f"writers add {d['episodes_per_add']} episodes per call.",
            markdown_table(["figure", "value", "note"], rows)]
    r = d["ray_run"]
    if r:
        status = "MET" if r["learner_utilization"] >= d["utilization_target"] else "NOT MET"
        text += ["## Learner utilization in a full Ray run",
                 markdown_table(["run", "learner utilization", "target", "status", "updates", "learner busy s", "wall s",
                                 "trained timesteps/s"],
                                [[r["command"], f"{r['learner_utilization']:.3f}", f">= {d['utilization_target']}", status,
                                  r["learner_updates"], r["learner_device_s"], r["wall_s"], r["trained_timesteps_per_s"]]]),
                 "Utilization is summary.json's throughput.learner_utilization: the learner's update time over the "
                 "run's wall time (expert collection and the final evaluation included)."]
    else:
        text += ["Learner utilization: not measured in this run (the full benchmark runs `frontier train "
                 "configs/quick.yaml` on Ray)."]
    text += [f"Command: `{d['command']}`."]
    return "\n\n".join(text)
