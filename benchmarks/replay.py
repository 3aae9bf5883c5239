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
import tracemalloc
from pathlib import Path

import numpy as np

from frontier.agents.spaces import Box, Discrete, TaskInfo
from frontier.agents.trajectory import Batch, Episode, make_batch, returns_to_go, sample_windows
from frontier.benchmarks.common import interleaved, machine, markdown_table, median, timed, write_results
from frontier.distributed.replay import ReplayStore

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
    """Chunks of CHUNK episodes, about `n_steps` / 8 timesteps of each task, tasks interleaved."""
    per_task = []
    for task in TASKS:
        eps, total = [], 0
        while total < n_steps // len(TASKS):
            eps.append(_episode(task, rng))
            total += eps[-1].length
        per_task.append(eps)
    # Interleaved by relative position within each task's list, so every chunk mixes tasks as a
    # rollout worker's chunks do and all tasks fill up together.
    keys = sorted(((k + 0.5) / len(eps), i, k) for i, eps in enumerate(per_task) for k in range(len(eps)))
    flat = [per_task[i][k] for _, i, k in keys]
    return [flat[j:j + CHUNK] for j in range(0, len(flat), CHUNK)]


def _traced_bytes_per_timestep(n_steps: int, infos: list[TaskInfo], capacity: int) -> float:
    """Bytes allocated (numpy arrays and Python objects, as tracemalloc sees them) per stored
    timestep, creating `n_steps` timesteps of episodes and storing them in a fresh store."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        store = ReplayStore(infos, capacity=capacity, offline_share=0.5, context_len=K, seed=0)
        for chunk in _chunks(n_steps, np.random.default_rng(2)):
            store.add(chunk)
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return used / store.total_timesteps()


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


def _windows(store: ReplayStore, rng: np.random.Generator) -> tuple[list[Episode], np.ndarray, list[np.ndarray]]:
    """BATCH windows drawn as `ReplayStore.sample` draws them: (episodes, starts, suffix sums)."""
    counts = rng.multinomial(BATCH, np.full(len(store.buffers), 1 / len(store.buffers)))
    eps, starts, sums = [], [], []
    for buf, n in zip(store.buffers, counts):
        view_eps, lengths, suffix = buf.view()
        idx, st = sample_windows(lengths, int(n), store.context_len, rng)
        eps += [view_eps[i] for i in idx]
        sums += [suffix[i] for i in idx]
        starts.append(st)
    return eps, np.concatenate(starts), sums


def make_batch_per_window(episodes, starts, context_len: int, tasks) -> Batch:
    """The previous batch construction (a few numpy calls per window, returns-to-go summed over
    the rest of each window's episode), kept to measure the current `make_batch` against."""
    K = context_len
    index = {t.name: i for i, t in enumerate(tasks)}
    task_of = np.array([index[ep.task] for ep in episodes], dtype=np.int64)
    order = np.argsort(task_of, kind="stable")
    B = len(order)
    task = task_of[order]
    rtg = np.zeros((B, K), dtype=np.float32)
    rewards = np.zeros((B, K), dtype=np.float32)
    terminals = np.zeros((B, K), dtype=np.float32)
    timesteps = np.zeros((B, K), dtype=np.int64)
    mask = np.zeros((B, K), dtype=np.float32)
    observations, actions = {}, {}
    row_in_task = np.zeros(B, dtype=np.int64)
    for i in np.unique(task):
        rows = np.flatnonzero(task == i)
        row_in_task[rows] = np.arange(len(rows))
        info = tasks[i]
        obs_shape = info.observation.shape if isinstance(info.observation, Box) else ()
        observations[int(i)] = np.zeros((len(rows), K, *obs_shape), dtype=episodes[order[rows[0]]].observations.dtype)
        act_shape = (info.action.dim,) if info.continuous else ()
        actions[int(i)] = np.zeros((len(rows), K, *act_shape), dtype=np.float32 if info.continuous else np.int64)
    for b in range(B):
        ep = episodes[order[b]]
        s = int(starts[order[b]])
        e = min(s + K, ep.length)
        s = max(s, 0)
        n = e - s
        i = int(task[b])
        r = row_in_task[b]
        observations[i][r, :n] = ep.observations[s:e]
        actions[i][r, :n] = ep.actions[s:e]
        rtg[b, :n] = returns_to_go(ep.rewards[s:], tasks[i].reward_scale)[:n]
        rewards[b, :n] = tasks[i].reward_scale * ep.rewards[s:e]
        terminals[b, n - 1] = float(ep.terminated and e == ep.length)
        timesteps[b, :n] = np.arange(s, e)
        mask[b, :n] = 1.0
    return Batch(task=task, observations=observations, actions=actions, returns_to_go=rtg, rewards=rewards,
                 terminals=terminals, timesteps=timesteps, mask=mask)


def _batch_construction(store: ReplayStore, rounds: int) -> dict[str, list[float]]:
    """Seconds to build a batch from the same windows: the previous per-window construction
    against `make_batch` with the store's suffix sums, interleaved."""
    rng = np.random.default_rng(1)
    state = {}

    def draw() -> float:
        state["w"] = _windows(store, rng)
        return 0.0

    def before() -> float:
        eps, starts, _ = state["w"]
        return timed(lambda: make_batch_per_window(eps, starts, K, store.tasks))

    def after() -> float:
        eps, starts, sums = state["w"]
        return timed(lambda: make_batch(eps, starts, K, store.tasks, sums))

    runs = interleaved({"draw": draw, "before": before, "after": after}, rounds)
    return {"before": runs["before"], "after": runs["after"]}


def _ray_run(timeout_s: float) -> dict:
    """`frontier train configs/quick.yaml` on Ray; its summary's throughput and wall time."""
    with tempfile.TemporaryDirectory(prefix="frontier-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "frontier.cli", "train", str(REPO / "configs" / "quick.yaml"), "--out", str(run_dir)]
        t, started = time.perf_counter(), time.time()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall, ended = time.perf_counter() - t, time.time()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
        learner_side, first, last = _learner_side(run_dir / "tb")
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
            # The learner's own figure (update time over the time inside its train calls) and the
            # span from its first to its last reported chunk: what is left of wall_s is start-up,
            # expert collection and the final evaluation, when there is nothing to train on or for.
            "learner_side_utilization": learner_side,
            "training_span_s": last - first,
            # Process start to the learner's first reported chunk, and its last one to the process's end.
            "before_training_s": first - started,
            "after_training_s": ended - last,
            "normalized_scores": {k: v.get("normalized_score") for k, v in summary.get("tasks", {}).items()},
        }


def _learner_side(tb_dir: Path) -> tuple[float, float, float]:
    """(last learner/utilization scalar, wall time of the first, of the last) of a run's TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("learner/utilization")
    return float(events[-1].value), float(events[0].wall_time), float(events[-1].wall_time)


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
    chunks = _chunks(n_steps, rng)
    # Each task's capacity holds its whole share (one episode of slack); later inserts evict.
    capacity = per_task + max(t[3][1] for t in TASKS)
    store = ReplayStore(infos, capacity=capacity, offline_share=0.5, context_len=K, seed=0)
    fill_eps, fill_steps = _insert_rate(store, chunks)
    stored = [(e, sums) for buf in store.buffers for e, sums in zip(buf.view()[0], buf.view()[2])]
    stored_steps = sum(e.length for e, _ in stored)
    array_bytes = sum(e.observations.nbytes + e.actions.nbytes + e.rewards.nbytes + sums.nbytes for e, sums in stored)
    full_eps, full_steps = _insert_rate(store, extra)
    total = store.total_timesteps()
    print(f"  replay: {total:,} timesteps stored; filling {fill_eps:,.0f} episodes/s, at capacity {full_eps:,.0f}", flush=True)

    _sample_latency(store, 3)  # warm-up: per-task views built
    lat = _sample_latency(store, n_samples)
    lat_after_insert = _sample_latency(store, n_samples, extra)
    construction = _batch_construction(store, n_samples)

    with tempfile.TemporaryDirectory(prefix="frontier-bench-replay-") as tmp:
        persisted = ReplayStore(infos, capacity=capacity, offline_share=0.5, context_len=K, directory=tmp, seed=0)
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
        "batch_construction_s": {"before": median(construction["before"]), "after": median(construction["after"]),
                                 "speedup": median(construction["before"]) / median(construction["after"])},
        "memory": {"array_bytes_per_timestep": array_bytes / stored_steps,
                   "traced_bytes_per_timestep": _traced_bytes_per_timestep(n_steps // 10, infos, capacity - per_task + per_task // 10),
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
        ["memory per stored timestep, arrays (bytes)", mem["array_bytes_per_timestep"], "observations, actions, rewards and reward suffix sums of the stored episodes"],
        ["memory per stored timestep, all allocations (bytes)", mem["traced_bytes_per_timestep"], "tracemalloc over creating and storing a tenth of the timesteps: arrays and Python objects"],
        ["disk per stored timestep (bytes)", mem["disk_bytes_per_timestep"], "replay/ shards"],
    ]
    text = [f"{d['stored_timesteps']:,} timesteps stored across {len(d['tasks'])} tasks ({', '.join(d['tasks'])}); "
            f"writers add {d['episodes_per_add']} episodes per call.",
            markdown_table(["figure", "value", "note"], rows)]
    c = d["batch_construction_s"]
    text += ["## Batch construction, before and after (same windows, interleaved)",
             markdown_table(["batch construction", "before (per-window loop) ms", "after (vectorized) ms", "speedup"],
                            [[f"batch {d['batch_size']}, K={d['context_len']}, 8 tasks", c["before"] * 1e3,
                              c["after"] * 1e3, f"{c['speedup']:.2f}x"]]),
             "Before: a few numpy calls per window and the rest of each window's episode summed for its "
             "returns-to-go. After: every window's slices gathered with one concatenate per array and scattered in "
             "one assignment; returns-to-go sliced from suffix sums the store computes once per episode at insert "
             "(8 bytes per stored timestep). Both give identical batches."]
    r = d["ray_run"]
    if r:
        status = "MET" if r["learner_utilization"] >= d["utilization_target"] else "NOT MET"
        text += ["## Learner utilization in a full Ray run",
                 markdown_table(["run", "learner utilization", "target", "status", "updates", "learner busy s", "wall s",
                                 "trained timesteps/s"],
                                [[r["command"], f"{r['learner_utilization']:.3f}", f">= {d['utilization_target']}", status,
                                  r["learner_updates"], r["learner_device_s"], r["wall_s"], r["trained_timesteps_per_s"]]]),
                 "Utilization is summary.json's throughput.learner_utilization: the learner's update time over the "
                 "run's wall time (expert collection and the final evaluation included).",
                 f"Learner side: utilization {r['learner_side_utilization']:.3f} inside its train calls (update time "
                 f"over time in train(), batch waits included); {r['training_span_s']:.0f} s from its first to its "
                 f"last reported chunk, so {r['wall_s'] - r['training_span_s']:.0f} s of the {r['wall_s']:.0f} s wall "
                 "lie before training starts (Ray and actor start-up, expert collection, observation statistics) "
                 "or after it ends (final evaluation, export). Seen from the benchmark's process: "
                 f"{r['before_training_s']:.0f} s from the command's start to the first chunk (interpreter and Ray "
                 f"start-up included), {r['after_training_s']:.0f} s from the last chunk to the command's end."]
    else:
        text += ["Learner utilization: not measured in this run (the full benchmark runs `frontier train "
                 "configs/quick.yaml` on Ray)."]
    text += [f"Command: `{d['command']}`."]
    return "\n\n".join(text)
