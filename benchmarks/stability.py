"""Stability: does the quick suite's result hold from one seed and one executor to the next?

configs/quick.yaml on the confirmation seeds (CONFIRM_SEEDS, fixed before the first run and never
tuned on), serial and on Ray, each run alone: per task the final normalized score of every seed,
the mean with its 95% interval, the between-seed standard deviation, and the worst seed; beside
it the same seeds under the recipe before the stable-learning changes (BEFORE: one return target
per task from the store's best decile, a constant learning rate after warm-up, raw weights as the
policy, no held-out data), serial. Then Hopper-v5 from medium data (configs/bench/mujoco-medium.yaml,
the learning benchmark's recipe) on the same seeds: the online gain in D4RL points, paired by seed,
and whether any seed ends below its own offline score. The narrative of how the recipe was reached is in
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
from frontier.benchmarks.learning import QUICK_OVERRIDES, ROOT, gain_row, mean_ci, medium_runs, plot_online, train

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
# From medium data: the task, and its target (the stable-learning issue): a mean online gain of at
# least this many D4RL points with its 95% interval above 0, and no seed below its offline score.
MEDIUM_TASK = "Hopper-v5"
GAIN_TARGET = 15.0
# Meta-World MT10 (configs/metaworld-mt10.yaml: task sampling by held-out error, no hand-set
# weights) on the first MT10_SEEDS confirmation seeds, on Ray; targets: mean success at least
# MT10_MEAN, no task below MT10_FLOOR in any seed, each run within the config's max_wall_s.
MT10_SEEDS = CONFIRM_SEEDS[:3]
# (name, overrides of the config): the config as committed first, then the weights it replaced
# (hand-set: push 4, pick-place 2, every other task 1) and uniform sampling, on the same seeds.
MT10_ARMS = (("val_nll", []),
             ("hand", ["replay.task_sampling=fixed",
                       "replay.task_weights={Meta-World/push-v3: 4, Meta-World/pick-place-v3: 2}"]),
             ("uniform", ["replay.task_sampling=fixed"]))
MT10_MEAN = 0.9
MT10_FLOOR = 0.6


def run_one(executor: str, overrides: list[str], run_dir: Path, config: Path = ROOT / "configs" / "quick.yaml") -> dict:
    if executor == "serial":
        return train(config, overrides, run_dir)
    summary = run_dir / "summary.json"
    if summary.is_file() and json.loads(summary.read_text()).get("status") == "finished":
        return json.loads(summary.read_text())
    from frontier.distributed import config as config_mod
    from frontier.distributed.ray_executor import RayExecutor
    from frontier.distributed.trainer import Trainer

    shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished Ray run starts over: its timing is the point
    run_dir.mkdir(parents=True)
    print(f"  training {run_dir.relative_to(ROOT)} (Ray)", flush=True)
    result = Trainer(config_mod.load(config, overrides), run_dir, RayExecutor(), live=False).run()
    if result["status"] != "finished":
        raise SystemExit(f"{run_dir}: stopped ({result.get('stop_reason')})")
    return result


def run_record(seed: int, summary: dict) -> dict:
    return {"seed": seed, "wall_s": summary["wall_s"], "env_steps": summary["env_steps"],
            "learner_updates": summary["learner_updates"]}


def per_seed_means(scores: dict[str, list[float]]) -> list[float]:
    """{task: [score per seed]} -> [mean over tasks per seed]."""
    return [float(x) for x in np.mean(list(scores.values()), axis=0)]


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
            runs.append(run_record(seed, summary))
            for task, t in summary["tasks"].items():
                finals.setdefault(task, []).append(t["normalized_score"])
        per_seed_mean = per_seed_means(finals)
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
    if not quick:
        data["medium"], medium_md = medium_part(seeds, out)
        data["mt10"], mt10_md = mt10_part()
        md += [medium_md, mt10_md]
    write_results(out, "stability", data, "\n".join(md))
    return data


def medium_part(seeds, out: Path) -> tuple[dict, str]:
    """MEDIUM_TASK from medium data on `seeds`: offline and final D4RL scores, the gain's interval."""
    config = ROOT / "configs" / "bench" / "mujoco-medium.yaml"
    results, curves = medium_runs(config, MEDIUM_TASK, seeds, [], RUNS_DIR / "medium", MEDIUM_TASK)
    gains = [r["final_score"] - r["offline_score"] for r in results]
    gain, half = mean_ci(gains)
    below = [r["seed"] for r in results if r["final_score"] < r["offline_score"]]
    offline = float(np.mean([r["offline_score"] for r in results]))
    plot_online({MEDIUM_TASK: {"recipe": curves}}, {MEDIUM_TASK: offline}, "env_steps",
                out / "stability_medium_steps.png", f"{MEDIUM_TASK} from medium data, seeds {seeds[0]}-{seeds[-1]}")
    met = gain >= GAIN_TARGET and gain - half > 0 and not below
    md = (f"## {MEDIUM_TASK} from medium data (configs/bench/mujoco-medium.yaml), serial\n\n"
          "D4RL points; offline = the evaluation when pretraining ended, after online = the FINAL "
          "evaluation; gain ± 95% Student-t interval over seeds, paired by seed.\n\n"
          + markdown_table(["task", "seeds", "offline", "after online", "online gain", "online env steps", "per seed"],
                           [gain_row(MEDIUM_TASK, results)])
          + f"\n\nTargets: gain >= +{GAIN_TARGET:g} with its interval above 0 ({gain:+.1f} ± {half:.1f}: "
          f"{'met' if gain >= GAIN_TARGET and gain - half > 0 else 'NOT met'}), no seed below its offline score "
          f"({'met' if not below else 'NOT met: seeds ' + ', '.join(map(str, below))}). Wall time per run: "
          f"{', '.join(str(round(r['wall_s'])) for r in results)} s.\n\n![](stability_medium_steps.png)\n")
    return {"task": MEDIUM_TASK, "config": str(config.relative_to(ROOT)), "results": results, "gain": gain,
            "ci95": half, "below_offline": below, "targets_met": met}, md


def mt10_part() -> tuple[dict, str]:
    """configs/metaworld-mt10.yaml on MT10_SEEDS (Ray) under each of MT10_ARMS: final success rate
    per task and seed; the targets are checked for the config as committed (the first arm)."""
    from frontier.distributed import config as config_mod

    config = ROOT / "configs" / "metaworld-mt10.yaml"
    cfg = config_mod.load(config)
    arms = {}
    for name, overrides in MT10_ARMS:
        success: dict[str, list[float]] = {}
        runs = []
        for seed in MT10_SEEDS:
            run_dir = RUNS_DIR / ("mt10" if not overrides else f"mt10-{name}") / f"s{seed}"
            summary = run_one("ray", [*overrides, f"seed={seed}"], run_dir, config)
            runs.append(run_record(seed, summary))
            for task, t in summary["tasks"].items():
                success.setdefault(task, []).append(t["success_rate"])
        per_seed = per_seed_means(success)
        mean, half = mean_ci(per_seed)
        arms[name] = {"overrides": overrides, "runs": runs, "success": success, "mean_over_tasks_per_seed": per_seed,
                      "mean": mean, "ci95": half, "worst": min(min(xs) for xs in success.values())}
    first, *others = arms
    main = arms[first]
    slowest = max(r["wall_s"] for r in main["runs"])
    worst = main["worst"]
    arm_list = "; ".join(f"{n}: `{' '.join(o)}`" if o else f"{n}: the config as committed" for n, o in MT10_ARMS)
    rows = [[t.removeprefix("Meta-World/"),
             *(f"{np.mean(a['success'][t]):.2f} ({', '.join(f'{x:.2f}' for x in a['success'][t])})" for a in arms.values())]
            for t in main["success"]]
    rows.append(["**mean over tasks**", *(f"**{a['mean']:.2f} ± {a['ci95']:.2f}**" for a in arms.values())])
    rows.append(["worst task-seed", *(f"{a['worst']:.2f}" for a in arms.values())])
    paired = []
    for name in others:
        diff = [x - y for x, y in zip(main["mean_over_tasks_per_seed"], arms[name]["mean_over_tasks_per_seed"])]
        m, h = mean_ci(diff)
        paired.append(f"{first} minus {name}: {m:+.3f} ± {h:.3f}")
    md = (f"## Meta-World MT10 (configs/metaworld-mt10.yaml), Ray\n\n"
          f"Seeds {', '.join(map(str, MT10_SEEDS))}; final success rate over {cfg.train.final_eval_episodes} episodes "
          f"per task, mean (per seed). Arms: {arm_list}. "
          f"The config as committed samples tasks by held-out NLL (replay.task_sampling `{cfg.replay.task_sampling}`, "
          f"floor {cfg.replay.task_sampling_floor:g}, temperature {cfg.replay.task_sampling_temperature:g}).\n\n"
          + markdown_table(["task", *arms], rows)
          + f"\n\nMean over tasks paired by seed (95% interval): {'; '.join(paired)}.\n\n"
          f"Targets for {first}: mean >= {MT10_MEAN} ({'met' if main['mean'] >= MT10_MEAN else 'NOT met'}), no task below "
          f"{MT10_FLOOR} ({'met' if worst >= MT10_FLOOR else f'NOT met: worst {worst:.2f}'}), "
          f"within {cfg.train.max_wall_s:g} s ({'met' if slowest <= cfg.train.max_wall_s else 'NOT met'}: "
          f"{', '.join(str(round(r['wall_s'])) for r in main['runs'])} s).\n")
    return {"seeds": list(MT10_SEEDS), "arms": arms, "targets_for": first}, md
