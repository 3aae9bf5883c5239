"""Stability: does the quick suite's result hold from one seed and one executor to the next?

configs/quick.yaml on the confirmation seeds (CONFIRM_SEEDS, fixed before the first run and never
tuned on), serial and on Ray, each run alone: per task the final normalized score of every seed,
the mean with its 95% interval, the between-seed standard deviation, and the worst seed; beside
it the same seeds under the recipe before the stable-learning changes (BEFORE: one return target
per task from the store's best decile, a constant learning rate after warm-up, raw weights as the
policy, no held-out data), serial. The narrative of how the recipe was reached is in
benchmarks/results/stability-notes.md, beside this benchmark's tables (stability.md).

Each run is a normal run directory under runs/bench/stability/ (ignored by git); a finished one is
read, not rerun; an interrupted serial one resumes from its last checkpoint.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from frontier.benchmarks.common import markdown_table, write_results
from frontier.benchmarks.learning import QUICK_OVERRIDES, ROOT, mean_ci, train

RUNS_DIR = ROOT / "runs" / "bench" / "stability"
CONFIRM_SEEDS = (100, 101, 102, 103, 104)
# The quick recipe before the stable-learning changes, as overrides of today's configs/quick.yaml.
BEFORE = ["replay.holdout_share=0", "model.return_head=false", "train.return_targets=top",
          "learner.lr_schedule=constant", "learner.ema_decay=0"]
# (variant, executor, overrides) in the order they run.
ARMS = (("after", "serial", []), ("after", "ray", []), ("before", "serial", BEFORE))
# The quick suite's targets (the stable-learning issue): every task of every seed at least this ...
FLOOR = 0.7
# ... and the mean over tasks and seeds at least this.
MEAN_TARGET = 0.93


def run_one(executor: str, overrides: list[str], run_dir: Path) -> dict:
    config = ROOT / "configs" / "quick.yaml"
    if executor == "serial":
        return train(config, overrides, run_dir)
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        return json.loads(summary.read_text())
    from frontier.distributed import config as config_mod
    from frontier.distributed.ray_executor import RayRunner

    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished Ray run starts over: its timing is the point
    run_dir.mkdir(parents=True)
    print(f"  training {run_dir.relative_to(ROOT)} (Ray)", flush=True)
    result = RayRunner(config_mod.load(config, overrides), run_dir, live=False).run()
    if result["status"] != "finished":
        raise SystemExit(f"{run_dir}: stopped ({result.get('stop_reason')})")
    return result


def arm_table(finals: dict[str, list[float]]) -> list[list]:
    rows = []
    for task, xs in finals.items():
        m, h = mean_ci(xs)
        rows.append([task, f"{m:.2f} ± {h:.2f}", f"{np.std(xs, ddof=1):.2f}" if len(xs) > 1 else "-",
                     f"{min(xs):.2f}", ", ".join(f"{x:.2f}" for x in xs)])
    return rows


def run(quick: bool, out: Path) -> dict:
    seeds = CONFIRM_SEEDS[:1] if quick else CONFIRM_SEEDS
    arms = ARMS[:1] if quick else ARMS
    data: dict = {"seeds": list(seeds), "floor": FLOOR, "mean_target": MEAN_TARGET, "arms": {}}
    md = [
          f"configs/quick.yaml, confirmation seeds {', '.join(map(str, seeds))} (fixed before the first run), "
          "final evaluation (20 episodes per task), normalized score. Mean ± 95% Student-t interval over "
          "seeds, the between-seed standard deviation, the worst seed and every seed.\n"]
    for variant, executor, overrides in arms:
        name = f"{variant}-{executor}"
        finals: dict[str, list[float]] = {}
        runs = []
        for seed in seeds:
            run_dir = RUNS_DIR / ("smoke" if quick else name) / f"s{seed}"
            summary = run_one(executor, [*overrides, *(QUICK_OVERRIDES if quick else []), f"seed={seed}"], run_dir)
            runs.append({"seed": seed, "wall_s": summary["wall_s"], "env_steps": summary["env_steps"],
                         "learner_updates": summary["learner_updates"]})
            for task, t in summary["tasks"].items():
                finals.setdefault(task, []).append(t["normalized_score"])
        per_seed_mean = [float(np.mean([finals[t][k] for t in finals])) for k in range(len(seeds))]
        mean, half = mean_ci(per_seed_mean)
        worst = min(min(xs) for xs in finals.values())
        data["arms"][name] = {"overrides": overrides, "runs": runs, "final_normalized": finals,
                              "mean_over_tasks_per_seed": per_seed_mean, "mean": mean, "ci95": half, "worst": worst}
        md.append(f"## {variant}, {executor}\n")
        if overrides:
            md.append(f"Overrides: `{' '.join(overrides)}`\n")
        md.append(markdown_table(["task", "normalized", "std between seeds", "worst seed", "per seed"],
                                 arm_table(finals)))
        md.append(f"\nMean over tasks: {mean:.2f} ± {half:.2f} (per seed {', '.join(f'{x:.2f}' for x in per_seed_mean)}); "
                  f"worst task-seed {worst:.2f}; targets: mean >= {MEAN_TARGET} "
                  f"({'met' if mean >= MEAN_TARGET else 'NOT met'}), every task-seed >= {FLOOR} "
                  f"({'met' if worst >= FLOOR else 'NOT met'}). Wall time per run: "
                  f"{', '.join(str(round(r['wall_s'])) for r in runs)} s.\n")
    write_results(out, "stability", data, "\n".join(md))
    return data
