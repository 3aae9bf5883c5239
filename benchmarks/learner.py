"""Learner benchmark: trained timesteps per second (batch x K / update time) of frontier's learner
against the ODT reference training step (re-implemented in benchmarks/odt_reference.py), at the same
model configuration, on the same machine, interleaved round by round.

Both train Hopper-shaped data (11-D observations, 3-D actions, episodes of 250-1000 steps). Per
configuration and round: a fresh batch for each side (frontier: `ReplayStore.sample` and
`batch_to_tensors`; the reference: its per-sample batch construction), then one update each of
the reference, frontier, and frontier with its previous optimizer path (per-tensor AdamW loop),
with frontier's update split into forward (model and loss), backward and optimizer phases.

The headline ratio compares updates alone: both systems build batches off the update's critical
path (frontier in the replay actor and a prefetch thread, the reference in DataLoader workers).
The serial ratio adds each side's batch construction, as a one-process loop would pay it.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from frontier.agents.learner import Learner, LearnerConfig
from frontier.agents.model import ModelConfig, batch_to_tensors
from frontier.agents.spaces import Box, TaskInfo
from frontier.agents.trajectory import Episode
from frontier.benchmarks import odt_reference as odt
from frontier.benchmarks.common import figure, interleaved, machine, markdown_table, median, save, write_results
from frontier.distributed.replay import ReplayStore

TARGET = 2.0  # frontier / reference trained timesteps per second, same configuration (issue 6)
K = 20
STATE_DIM, ACT_DIM = 11, 3


@dataclass(frozen=True)
class Setting:
    """One model configuration measured for both systems."""

    name: str
    embed_dim: int
    n_layers: int
    n_heads: int
    batch_size: int
    rounds: int
    issue_reference: float | None = None  # the reference's timesteps/s on this machine, from the issue text


FULL = (
    Setting("default CPU (quick.yaml)", 128, 3, 4, 64, rounds=10),
    Setting("128/3/1", 128, 3, 1, 64, rounds=10, issue_reference=11_000),
    Setting("256/4/4", 256, 4, 4, 256, rounds=4, issue_reference=2_200),
    Setting("ODT paper", 512, 4, 4, 256, rounds=3, issue_reference=630),
)
QUICK = (Setting("tiny", 32, 1, 2, 8, rounds=2),)


def _episodes(n_steps: int, rng: np.random.Generator, max_len: int) -> list[Episode]:
    out, total = [], 0
    while total < n_steps:
        T = int(rng.integers(max_len // 4, max_len + 1))
        out.append(Episode(
            task="Hopper",
            observations=rng.standard_normal((T, STATE_DIM)).astype(np.float32),
            actions=rng.uniform(-1, 1, (T, ACT_DIM)).astype(np.float32),
            rewards=rng.uniform(0, 3, T).astype(np.float32),
            terminated=False,
        ))
        total += T
    return out


def _learner(task: TaskInfo, s: Setting, device: str = "cpu", compile: bool = False) -> Learner:
    model_cfg = ModelConfig(embed_dim=s.embed_dim, n_layers=s.n_layers, n_heads=s.n_heads, context_len=K)
    return Learner(model_cfg, [task], LearnerConfig(device=device, compile=compile), seed=0)


def _measure(s: Setting, store: ReplayStore, trajectories: list[dict], task: TaskInfo, rng, compile: bool) -> dict:
    ref_cfg = odt.ReferenceConfig(state_dim=STATE_DIM, act_dim=ACT_DIM, embed_dim=s.embed_dim, n_layers=s.n_layers,
                                  n_heads=s.n_heads, context_len=K)
    reference = odt.ReferenceTrainer(ref_cfg, seed=0)
    frontier = _learner(task, s)
    before = _learner(task, s)
    for g in before.optimizer.param_groups:  # the optimizer path before this benchmark's work
        g["fused"] = False
    mean, std = np.zeros(STATE_DIM), np.ones(STATE_DIM)
    B = s.batch_size
    phases: dict[str, list[float]] = {"sampling": [], "copy": [], "forward": [], "backward": [], "optimizer": []}
    ref_batch_s: list[float] = []
    state: dict = {}

    def frontier_sample() -> float:
        t = time.perf_counter()
        batch = store.sample(B)
        tensors = batch_to_tensors(batch, frontier.device)
        state["frontier"] = (batch, tensors)
        dt = time.perf_counter() - t
        phases["sampling"].append(dt)
        return dt

    def reference_sample() -> float:
        t = time.perf_counter()
        state["reference"] = odt.reference_batch(trajectories, B, ref_cfg, rng, mean, std)
        dt = time.perf_counter() - t
        ref_batch_s.append(dt)
        return dt

    def reference_update() -> float:
        t = time.perf_counter()
        reference.step(state["reference"])
        return time.perf_counter() - t

    def frontier_update() -> float:
        timings: dict[str, float] = {}
        t = time.perf_counter()
        frontier.step(*state["frontier"], timings=timings)
        dt = time.perf_counter() - t
        for k, v in timings.items():
            phases[k].append(v)
        return dt

    def before_update() -> float:
        t = time.perf_counter()
        before.step(*state["frontier"])
        return time.perf_counter() - t

    contenders = {"frontier batch": frontier_sample, "reference batch": reference_sample,
                  "reference": reference_update, "frontier": frontier_update, "frontier (before)": before_update}
    compile_s = None
    if compile:
        # A fresh inductor cache, so the compile time is what a new machine or run directory pays.
        cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
        with tempfile.TemporaryDirectory(prefix="frontier-inductor-") as tmp:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = tmp
            try:
                t = time.perf_counter()
                compiled = _learner(task, s, compile=True)
                frontier_sample()
                compiled.step(*state["frontier"])
                compiled.step(*state["frontier"])
                compile_s = time.perf_counter() - t
            finally:
                if cache is None:
                    os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
                else:
                    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache

        def compiled_update() -> float:
            t = time.perf_counter()
            compiled.step(*state["frontier"])
            return time.perf_counter() - t

        contenders["frontier (torch.compile)"] = compiled_update
    interleaved(contenders, 1)  # warm-up round: optimizer state, allocator, kernels
    for v in phases.values():
        v.clear()
    ref_batch_s.clear()
    runs = interleaved(contenders, s.rounds)
    ts = B * K
    upd = {k: median(v) for k, v in runs.items() if "batch" not in k}
    out = {
        "setting": s.name, "embed_dim": s.embed_dim, "n_layers": s.n_layers, "n_heads": s.n_heads, "batch_size": B,
        "context_len": K, "rounds": s.rounds,
        "update_s": upd,
        "timesteps_per_s": {k: ts / v for k, v in upd.items()},
        "frontier_breakdown_s": {k: median(v) for k, v in phases.items()},
        "reference_batch_s": median(ref_batch_s),
        "serial_timesteps_per_s": {
            "frontier": ts / (upd["frontier"] + median(phases["sampling"])),
            "reference": ts / (upd["reference"] + median(ref_batch_s)),
        },
        "compile_s": compile_s,
        "issue_reference_timesteps_per_s": s.issue_reference,
    }
    out["ratio"] = out["timesteps_per_s"]["frontier"] / out["timesteps_per_s"]["reference"]
    out["serial_ratio"] = out["serial_timesteps_per_s"]["frontier"] / out["serial_timesteps_per_s"]["reference"]
    out["optimizer_speedup"] = upd["frontier (before)"] / upd["frontier"]
    if s.issue_reference:
        out["reference_vs_issue"] = out["timesteps_per_s"]["reference"] / s.issue_reference
    return out


def _gpu_bf16(task: TaskInfo, store: ReplayStore, s: Setting, rounds: int) -> dict | None:
    """bf16 autocast throughput and achieved TFLOP/s on CUDA (frontier only); None without a GPU."""
    if not torch.cuda.is_available():
        return None
    learner = _learner(task, s, device="cuda")
    batches = [store.sample(s.batch_size) for _ in range(rounds + 2)]
    metrics = [learner.step(b) for b in batches]
    steady = metrics[2:]
    update_s = median([m["learner/update_s"] for m in steady])
    flops = median([m["learner/flops"] for m in steady])
    return {"setting": s.name, "device": torch.cuda.get_device_name(0), "update_s": update_s,
            "timesteps_per_s": s.batch_size * K / update_s, "tflops": flops / update_s / 1e12}


def run(quick: bool, out: Path, threads: int = 1) -> dict:
    """Measure every setting (QUICK or FULL) and write learner.json/.md/.png into `out`.

    `threads` torch threads for both systems: 1 by default, because on a shared 2-core machine
    a second thread waits on busy cores and makes both systems several times slower.
    """
    m = machine()
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    settings = QUICK if quick else FULL
    rng = np.random.default_rng(0)
    n_steps, max_len = (5_000, 200) if quick else (200_000, 1000)
    episodes = _episodes(n_steps, rng, max_len)
    task = TaskInfo("Hopper", Box((STATE_DIM,)), Box((ACT_DIM,)), reward_scale=0.001)
    store = ReplayStore([task], capacity=10 * n_steps, offline_share=0.5, context_len=K, seed=0)
    store.add(episodes)
    trajectories = [{"observations": e.observations, "actions": e.actions, "rewards": e.rewards,
                     "terminals": np.zeros(e.length, dtype=bool)} for e in episodes]
    results = []
    try:
        for i, s in enumerate(settings):
            print(f"  learner: {s.name} ({s.embed_dim}/{s.n_layers}/{s.n_heads}, batch {s.batch_size})", flush=True)
            results.append(_measure(s, store, trajectories, task, rng, compile=(i == 0 and not quick)))
        gpu = _gpu_bf16(task, store, settings[-1], rounds=2 if quick else 10)
    finally:
        torch.set_num_threads(prev_threads)
    data = {"machine": m, "threads": threads, "target_ratio": TARGET, "settings": results, "gpu_bf16": gpu,
            "command": "frontier bench learner" + (" --quick" if quick else "")}
    md = _markdown(data)
    print(md, flush=True)
    written = write_results(out, "learner", data, md)
    _plot(results, Path(out) / "learner.png")
    return written


def _markdown(data: dict) -> str:
    rows = []
    for r in data["settings"]:
        tps = r["timesteps_per_s"]
        rows.append([r["setting"], f"{r['embed_dim']}/{r['n_layers']}/{r['n_heads']}", r["batch_size"],
                     tps["reference"], tps["frontier"], f"{r['ratio']:.2f}x", f">= {TARGET:g}x",
                     "MET" if r["ratio"] >= TARGET else "NOT MET"])
    text = ["Workload: one Hopper-shaped task (11-D observations, 3-D actions, episodes of 250-1000 steps, "
            "200k stored timesteps), K = 20, dropout 0.1 on both sides; medians over interleaved rounds.",
            "## Trained timesteps per second (batch x K / update time), updates only",
            markdown_table(["setting", "embed/layers/heads", "batch", "ODT reference", "frontier", "ratio", "target",
                            "status"], rows)]
    rows = [[r["setting"], r["serial_timesteps_per_s"]["reference"], r["serial_timesteps_per_s"]["frontier"],
             f"{r['serial_ratio']:.2f}x", r["reference_batch_s"] * 1e3, r["frontier_breakdown_s"]["sampling"] * 1e3]
            for r in data["settings"]]
    text += ["## With batch construction in the same process (serial)",
             markdown_table(["setting", "reference ts/s", "frontier ts/s", "ratio", "reference batch ms",
                             "frontier batch ms"], rows)]
    rows = []
    for r in data["settings"]:
        b = r["frontier_breakdown_s"]
        rows.append([r["setting"], b["sampling"] * 1e3, b["copy"] * 1e3, b["forward"] * 1e3, b["backward"] * 1e3,
                     b["optimizer"] * 1e3, r["update_s"]["frontier"] * 1e3])
    text += ["## Frontier update breakdown (median ms per update)",
             "Sampling is `ReplayStore.sample` + `batch_to_tensors` (in a run: the replay actor and the prefetch "
             "thread, off the update's path); copy is the host-to-device copy inside the update (none when "
             "prefetched); forward is model and loss; optimizer is clipping, AdamW and the temperature step.",
             markdown_table(["setting", "sampling", "copy", "forward", "backward", "optimizer", "update total"], rows)]
    rows = []
    for r in data["settings"]:
        u = r["update_s"]
        row = [r["setting"], u["frontier (before)"] * 1e3, u["frontier"] * 1e3, f"{r['optimizer_speedup']:.2f}x"]
        comp = u.get("frontier (torch.compile)")
        row += [comp * 1e3 if comp else "-", f"{r['compile_s']:.0f} s" if r["compile_s"] else "-"]
        rows.append(row)
    text += ["## Performance work, before and after (same run)",
             "Before: AdamW's per-tensor loop (the learner's CPU path until now); after: the fused AdamW kernel, "
             "now used on CPU too. torch.compile of the model's forward is measured on the first setting with "
             "its compile time (first two updates, empty inductor cache) apart; it does not pay on this CPU, so the learner leaves it off (`learner.compile: false`).",
             markdown_table(["setting", "before ms", "after ms", "speedup", "torch.compile ms", "compile time"], rows)]
    rows = [[r["setting"], float(r["issue_reference_timesteps_per_s"]), r["timesteps_per_s"]["reference"],
             f"{r['reference_vs_issue']:.2f}"] for r in data["settings"] if r.get("issue_reference_timesteps_per_s")]
    if rows:
        text += ["## Cross-check of the reference re-implementation",
                 "The reference's own figures on this machine (issue 6, measured at another time, idle machine, "
                 "default threads) against the re-implementation measured here; a ratio near 1 says the "
                 "re-implementation costs what the reference costs.",
                 markdown_table(["setting", "issue figure ts/s", "re-implementation ts/s", "measured / issue"], rows)]
    rows = [[r["setting"], TARGET * r["issue_reference_timesteps_per_s"], r["timesteps_per_s"]["frontier"],
             "MET" if r["timesteps_per_s"]["frontier"] >= TARGET * r["issue_reference_timesteps_per_s"] else "NOT MET"]
            for r in data["settings"] if r.get("issue_reference_timesteps_per_s")]
    if rows:
        text += ["## Against the issue's absolute figures",
                 "Twice the reference's own timings from the issue, against frontier measured here. These depend on "
                 f"the machine's load (load average {data['machine']['load_average_1m']:.1f} at start on 2 cores); "
                 "the same-run ratio above does not.",
                 markdown_table(["setting", "2x issue reference ts/s", "frontier ts/s", "status"], rows)]
    gpu = data["gpu_bf16"]
    text += ["## GPU (bf16 autocast)",
             f"{gpu['device']}: {gpu['timesteps_per_s']:,.0f} timesteps/s, {gpu['tflops']:.1f} TFLOP/s achieved "
             f"({gpu['setting']})." if gpu else
             "Not measured: this machine has no GPU. On CUDA, `frontier bench learner` also reports frontier's bf16 "
             "throughput and achieved TFLOP/s (the learner's FLOP count per update over its update time)."]
    text += [f"Threads: {data['threads']} torch thread(s) for both systems. Command: `{data['command']}`.",
             "The reference is a re-implementation of facebookresearch/online-dt's training step "
             "(benchmarks/odt_reference.py), not its code."]
    return "\n\n".join(text)


def _plot(results: list[dict], path: Path) -> None:
    fig, ax = figure()
    x = np.arange(len(results))
    ref = [r["timesteps_per_s"]["reference"] for r in results]
    fr = [r["timesteps_per_s"]["frontier"] for r in results]
    ax.bar(x - 0.2, ref, 0.4, label="ODT reference (re-implementation)")
    ax.bar(x + 0.2, fr, 0.4, label="frontier")
    ax.scatter(x + 0.2, [TARGET * v for v in ref], marker="_", s=400, color="k", label=f"target ({TARGET:g}x reference)")
    ax.set_xticks(x, [f"{r['setting']}\n{r['embed_dim']}/{r['n_layers']}/{r['n_heads']} b{r['batch_size']}"
                      for r in results], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("trained timesteps / s")
    ax.set_title("Learner throughput, same machine, interleaved")
    ax.legend(fontsize=7)
    save(fig, path)
