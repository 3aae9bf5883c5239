"""Learning: normalized score against env steps and wall time, from real training runs.

Suites:
- quick: configs/quick.yaml (classic control, MuJoCo, Atari from scripted experts), seed 0
  only (QUICK_SEEDS: each seed is a ~6-minute run on 2 idle cores, far more on a shared machine).
- mujoco-medium: configs/bench/mujoco-medium.yaml, one run per MuJoCo locomotion task whose zoo
  has a medium policy, seeds 0..2: offline pretraining on the medium policy's episodes, then online
  fine-tuning. The online gain is the score at the end minus the score when pretraining ended,
  in frontier's normalization and in D4RL's (the ODT paper's unit).

Each run is a normal serial run directory under runs/bench/learning/ (ignored by git); a finished
run (summary.json "finished") is read, not rerun, and an interrupted one resumes from its last
checkpoint, so the benchmark can be stopped and restarted.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from benchmarks.common import figure, markdown_table, save, write_results

ROOT = Path(__file__).resolve().parent.parent
RUNS_DIR = ROOT / "runs" / "bench" / "learning"
SEEDS = (0, 1, 2)
QUICK_SEEDS = (0,)
LOCOMOTION = ("Hopper-v5", "HalfCheetah-v5", "Walker2d-v5")
# D4RL reference returns (random, expert) used by the ODT paper's normalized scores (x100).
D4RL_REFERENCE = {"Hopper-v5": (-20.272305, 3234.3), "HalfCheetah-v5": (-280.178953, 12135.0),
                  "Walker2d-v5": (1.629008, 4592.3)}
# The ODT paper's figures (D4RL-normalized): hopper-medium 66.95 -> 97.54 after 200k online samples.
ODT_PAPER = {"Hopper-v5": (66.95, 97.54)}
# --quick: a smoke run of the whole path in seconds (CartPole, tiny model, a few updates).
QUICK_OVERRIDES = ["tasks=[CartPole-v1]", "experts.episodes=4", "model.embed_dim=32", "model.n_layers=1",
                   "model.n_heads=2", "model.context_len=8", "train.batch_size=16", "train.pretrain_updates=20",
                   "train.online_updates=20", "train.updates_per_round=10", "train.explore_steps_per_round=200",
                   "train.eval_every=10", "train.eval_episodes=2", "train.final_eval_episodes=2",
                   "rollout.envs_per_worker=2", "checkpoint_every=20", "train.max_wall_s=0"]


def train(config: Path, overrides: list[str], run_dir: Path) -> dict:
    """Run (or resume, or just read) one serial training run; its summary.json."""
    from distributed import config as config_mod
    from distributed.driver import SerialRunner, latest_checkpoint

    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        return json.loads(summary.read_text())
    resume = latest_checkpoint(run_dir) is not None
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)  # a run killed before its first checkpoint starts over
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = config_mod.load(run_dir / "config.yaml") if resume else config_mod.load(config, overrides)
    print(f"  {'resuming' if resume else 'training'} {run_dir.relative_to(ROOT) if run_dir.is_relative_to(ROOT) else run_dir}",
          flush=True)
    return SerialRunner(cfg, run_dir, resume=resume, live=False).run()


def eval_curve(run_dir: Path, task: str) -> dict[str, list[float]]:
    """Evaluation points of one task: env steps, seconds since the run's first event, return, normalized."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from distributed.monitor import tag_name

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    returns = acc.Scalars(f"return/{tag_name(task)}")
    normalized = acc.Scalars(f"normalized/{tag_name(task)}")
    t0 = min(e.wall_time for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)[:1])
    return {"env_steps": [e.step for e in returns], "wall_s": [e.wall_time - t0 for e in returns],
            "return": [e.value for e in returns], "normalized": [e.value for e in normalized]}


def d4rl_score(task: str, ret: float) -> float:
    rnd, exp = D4RL_REFERENCE[task]
    return 100.0 * (ret - rnd) / (exp - rnd)


def mean_ci(xs: list[float]) -> tuple[float, float]:
    """Mean and half-width of a normal 95% interval across seeds (0 for a single seed)."""
    a = np.asarray(xs, dtype=np.float64)
    half = 1.96 * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else 0.0
    return float(a.mean()), float(half)


def plot_curves(curves: dict[str, list[dict]], x: str, path: Path, title: str) -> None:
    fig, ax = figure()
    for task, runs in curves.items():
        for i, c in enumerate(runs):
            ax.plot(c[x], c["normalized"], marker="o", ms=3, alpha=0.8, color=f"C{list(curves).index(task)}",
                    label=task if i == 0 else None)
    ax.set_xlabel("env steps" if x == "env_steps" else "wall time (s)")
    ax.set_ylabel("normalized score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


def quick_suite(quick: bool, out: Path) -> tuple[dict, str]:
    seeds = QUICK_SEEDS
    overrides = QUICK_OVERRIDES if quick else []
    curves: dict[str, list[dict]] = {}
    finals: dict[str, list[float]] = {}
    runs = []
    for seed in seeds:
        run_dir = RUNS_DIR / ("quick-smoke" if quick else "quick") / f"s{seed}"
        summary = train(ROOT / "configs" / "quick.yaml", [*overrides, f"seed={seed}"], run_dir)
        runs.append({"seed": seed, "run_dir": str(run_dir), "env_steps": summary["env_steps"],
                     "wall_s": summary["wall_s"], "learner_updates": summary["learner_updates"]})
        for task, t in summary["tasks"].items():
            curves.setdefault(task, []).append(eval_curve(run_dir, task))
            finals.setdefault(task, []).append(t["normalized_score"])
    plot_curves(curves, "env_steps", out / "learning_quick_steps.png", "quick suite: score vs env steps")
    plot_curves(curves, "wall_s", out / "learning_quick_wall.png", "quick suite: score vs wall time")
    rows = []
    for task, xs in finals.items():
        m, h = mean_ci(xs)
        rows.append([task, len(xs), f"{m:.2f} ± {h:.2f}", ", ".join(f"{x:.2f}" for x in xs)])
    md = ("## Quick suite (configs/quick.yaml)\n\nFinal normalized score (final evaluation of each task and seed; "
          "mean ± 95% normal interval across seeds):\n\n"
          + markdown_table(["task", "seeds", "normalized", "per seed"], rows)
          + "\n\n![](learning_quick_steps.png)\n![](learning_quick_wall.png)\n")
    data = {"seeds": list(seeds), "runs": runs, "final_normalized": finals, "curves": curves}
    return data, md


def medium_suite(quick: bool, out: Path) -> tuple[dict, str]:
    from envs.registry import get_task

    tasks = [t for t in LOCOMOTION if "rl-medium" in get_task(t).experts]
    if quick or not tasks:
        return {"tasks": tasks, "skipped": "quick mode" if quick else "no zoo medium policy"}, (
            "## MuJoCo from medium data\n\nNot run: "
            + ("--quick." if quick else "the zoo holds no medium policy for Hopper/HalfCheetah/Walker2d yet.") + "\n")
    from distributed import config as config_mod

    config = ROOT / "configs" / "bench" / "mujoco-medium.yaml"
    base = config_mod.load(config)
    offline_at = base.train.pretrain_updates
    results: dict[str, list[dict]] = {}
    curves: dict[str, list[dict]] = {}
    for task in tasks:
        for seed in SEEDS:
            run_dir = RUNS_DIR / "mujoco-medium" / f"{task}-s{seed}"
            summary = train(config, [f"tasks=[{task}]", f"seed={seed}"], run_dir)
            c = eval_curve(run_dir, task)
            curves.setdefault(task, []).append(c)
            # The evaluation logged when pretraining ended: the first one after `offline_at` updates.
            i = min(offline_at // base.train.eval_every, len(c["return"])) - 1
            offline_ret, final_ret = c["return"][i], summary["tasks"][task]["eval_return_mean"]
            results.setdefault(task, []).append({
                "seed": seed, "offline_return": offline_ret, "final_return": final_ret,
                "offline_normalized": c["normalized"][i], "final_normalized": summary["tasks"][task]["normalized_score"],
                "offline_d4rl": d4rl_score(task, offline_ret), "final_d4rl": d4rl_score(task, final_ret),
                "online_env_steps": summary["env_steps"] - c["env_steps"][i], "wall_s": summary["wall_s"]})
    plot_curves(curves, "env_steps", out / "learning_medium_steps.png", "MuJoCo from medium data: score vs env steps")
    plot_curves(curves, "wall_s", out / "learning_medium_wall.png", "MuJoCo from medium data: score vs wall time")
    rows, total_gain = [], 0.0
    for task, rs in results.items():
        off, fin = [r["offline_d4rl"] for r in rs], [r["final_d4rl"] for r in rs]
        gain = mean_ci([f - o for f, o in zip(fin, off)])
        total_gain += gain[0]
        paper = ODT_PAPER.get(task)
        rows.append([task, len(rs), f"{mean_ci(off)[0]:.1f}", f"{mean_ci(fin)[0]:.1f}", f"{gain[0]:+.1f} ± {gain[1]:.1f}",
                     f"{int(np.mean([r['online_env_steps'] for r in rs])):,}",
                     ", ".join(f"{o:.1f} -> {f:.1f}" for o, f in zip(off, fin)),
                     f"{paper[0]} -> {paper[1]} ({paper[1] - paper[0]:+.1f}) after 200k" if paper else "-"])
    md = ("## MuJoCo from medium data (configs/bench/mujoco-medium.yaml)\n\n"
          f"Offline pretraining ({offline_at} updates) on {base.experts.episodes} episodes of the zoo medium policy, "
          f"then online fine-tuning: {base.train.online_updates} updates, {base.train.explore_steps_per_round} "
          f"exploration env steps per {base.train.updates_per_round} updates, return targets: "
          f"{base.train.return_targets}. D4RL-normalized scores (x100, D4RL reference returns) at the end of "
          "pretraining and at the end, mean over seeds; gain ± 95% normal interval; online env steps include "
          "evaluation episodes:\n\n"
          + markdown_table(["task", "seeds", "offline", "after online", "online gain", "online env steps",
                            "per seed", "ODT paper (D4RL medium)"], rows)
          + f"\n\nSum of online gains over these tasks: {total_gain:+.1f} points (the ODT paper: +45 over six "
            "hopper/walker/halfcheetah medium and medium-replay datasets).\n\n"
            "![](learning_medium_steps.png)\n![](learning_medium_wall.png)\n")
    return {"tasks": tasks, "config": str(config.relative_to(ROOT)), "results": results, "curves": curves,
            "sum_of_gains_d4rl": total_gain}, md


def run(quick: bool, out: Path) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    quick_data, quick_md = quick_suite(quick, out)
    medium_data, medium_md = medium_suite(quick, out)
    print(quick_md, medium_md, sep="\n", flush=True)
    return write_results(out, "learning", {"quick": quick_data, "mujoco_medium": medium_data},
                         "Commands: `frontier bench learning` (runs under runs/bench/learning/, resumable).\n\n"
                         + quick_md + "\n" + medium_md)
