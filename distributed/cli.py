"""The `frontier` command line.

Every command checks its input (task names, config keys and values, files) before any
work starts; a problem is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

from distributed.errors import USAGE_ERROR, UsageError


def _fail(msg: str) -> None:
    raise UsageError(msg)


# -- tasks -------------------------------------------------------------------------------


def cmd_tasks(args) -> int:
    from envs.registry import all_tasks, plugin_errors

    rows = []
    for name, spec in sorted(all_tasks().items()):
        info = spec.info()
        rows.append({
            "name": name,
            "suite": spec.suite,
            "observation": str(info.observation),
            "action": str(info.action),
            "experts": sorted(spec.experts),
            "random_return": spec.random_return,
            "expert_return": spec.expert_return,
            "max_episode_steps": spec.max_episode_steps,
        })
    errors = plugin_errors()
    if args.json:
        print(json.dumps({"tasks": rows, "plugin_errors": errors}, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="frontier tasks")
        for col in ("task", "suite", "observation", "action", "experts", "random", "expert"):
            table.add_column(col, justify="right" if col in ("random", "expert") else "left")
        fmt = lambda v: "measure" if v is None else f"{v:.1f}"  # noqa: E731
        for r in rows:
            table.add_row(r["name"], r["suite"], r["observation"], r["action"], ", ".join(r["experts"]) or "-",
                          fmt(r["random_return"]), fmt(r["expert_return"]))
        console = Console(width=None if sys.stdout.isatty() else 160)  # pipes get the whole table
        console.print(table)
        for plugin, err in errors.items():
            console.print(f"[red]plugin {plugin!r} failed to load: {err}[/red]", highlight=False)
    return 0


# -- train -------------------------------------------------------------------------------


def _load_config(args):
    from distributed import config as config_mod
    from envs.registry import get_task

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            _fail(f"--resume {run_dir}: not a run directory (no config.yaml)")
        if args.config:
            _fail("give either CONFIG or --resume RUN_DIR, not both")
        cfg = config_mod.load(run_dir / "config.yaml", args.set or [])
    else:
        if not args.config:
            _fail("train needs a CONFIG file (or --resume RUN_DIR)")
        cfg = config_mod.load(args.config, args.set or [])
        run_dir = Path(args.out) if args.out else Path("runs") / (
            Path(args.config).stem + "-" + datetime.now().strftime("%Y%m%d-%H%M%S"))
        if (run_dir / "config.yaml").exists():
            _fail(f"--out {run_dir} already holds a run; use --resume {run_dir} to continue it")
    for name in cfg.tasks:
        try:
            get_task(name)
        except KeyError as e:
            _fail(e.args[0])
    if not args.resume:  # expert settings are checked before any work or run directory exists
        from envs.registry import make_expert

        for name in cfg.tasks:
            kind = cfg.experts.sources.get(name, cfg.experts.source)
            try:
                make_expert(get_task(name), kind)
            except KeyError as e:
                _fail(f"experts for {name}: {e.args[0]}")
            except ValueError as e:
                _fail(f"experts for {name}: {e}")
    return cfg, run_dir


def cmd_train(args) -> int:
    try:
        cfg, run_dir = _load_config(args)
    except ValueError as e:
        _fail(str(e))
    if args.serial and args.address:
        _fail("--serial runs in one process without Ray; it cannot take --address")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run directory: {run_dir}", file=sys.stderr, flush=True)
    try:  # setting up measures the tasks' missing reference returns: a broken env fails here
        if args.serial:
            from distributed.driver import SerialRunner

            runner = SerialRunner(cfg, run_dir, resume=bool(args.resume), strict=args.strict)
        else:
            from distributed.ray_driver import RayRunner

            runner = RayRunner(cfg, run_dir, resume=bool(args.resume),
                               address=args.address or os.environ.get("RAY_ADDRESS"), strict=args.strict)
    except (ValueError, RuntimeError) as e:  # a bad setting, or an env broken before training starts
        if created:  # nothing half-written
            shutil.rmtree(run_dir, ignore_errors=True)
        _fail(str(e))
    summary = runner.run()
    _print_summary(summary)
    from distributed.driver import EXIT_CODES

    return EXIT_CODES.get(summary.get("stop_reason") or summary["status"], 1)


def _print_summary(summary: dict) -> None:
    reason = f" ({summary['stop_reason']})" if summary.get("stop_reason") else ""
    print(f"status {summary['status']}{reason}  updates {summary['learner_updates']}  env steps {summary['env_steps']}  "
          f"wall {summary['wall_s']:.0f}s")
    for task, t in summary["tasks"].items():
        if t["eval_return_mean"] is None:
            print(f"  {task:28s} not evaluated (stopped before its first evaluation)")
            continue
        success = "" if t.get("success_rate") is None else f"  success {t['success_rate']:.2f}"
        print(f"  {task:28s} return {t['eval_return_mean']:9.1f} ± {t['eval_return_std']:7.1f}  "
              f"normalized {t['normalized_score']:.2f}{success}")


# -- eval --------------------------------------------------------------------------------


def last_eval_targets(run_dir: Path) -> dict[str, float]:
    """{task: return target} of the last evaluation in `run_dir`/evals.jsonl ({} if none is recorded)."""
    path = run_dir / "evals.jsonl"
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        return dict(json.loads(lines[-1]).get("targets") or {}) if lines else {}
    except json.JSONDecodeError:
        return {}


def cmd_eval(args) -> int:
    from distributed import config as config_mod

    run_dir = Path(args.run_dir)
    weights = run_dir / "model.safetensors"
    if not (run_dir / "config.yaml").is_file():
        _fail(f"{run_dir}: not a run directory (no config.yaml)")
    if not weights.is_file():
        from distributed.driver import latest_checkpoint

        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            _fail(f"{run_dir}: no model.safetensors and no checkpoint to evaluate")
        weights = ckpt / "model.safetensors"
    try:
        cfg = config_mod.load(run_dir / "config.yaml")
    except ValueError as e:
        _fail(str(e))
    tasks = args.tasks or cfg.tasks
    unknown = [t for t in tasks if t not in cfg.tasks]
    if unknown:
        _fail(f"task {unknown[0]!r} is not one the run trained on ({', '.join(cfg.tasks)})")
    if args.episodes <= 0:
        _fail(f"--episodes must be > 0, got {args.episodes}")

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from distributed.monitor import normalized_score
    from distributed.rollout import RolloutWorker
    from envs.references import reference_returns
    from envs.registry import get_task

    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        _fail(f"cannot read weights {weights}: {e}")
    worker = RolloutWorker(tasks, cfg.tasks, cfg.model, "eval", max(len(tasks), cfg.rollout.envs_per_worker),
                           args.seed, 0)
    worker.set_weights(0, state)
    import numpy as np

    refs = {t: reference_returns(get_task(t), cache=run_dir / "references.json") for t in tasks}

    def evaluate() -> dict[str, dict]:
        returns: dict[str, list[float]] = {}
        successes: dict[str, list[bool]] = {}
        for ep in worker.evaluate(args.episodes):
            returns.setdefault(ep.task, []).append(ep.ret)
            if ep.success is not None:
                successes.setdefault(ep.task, []).append(ep.success)
        return {t: {"return_mean": float(np.mean(returns[t])), "return_std": float(np.std(returns[t])),
                    "episodes": len(returns[t]), "normalized_score": normalized_score(float(np.mean(returns[t])), *refs[t]),
                    "success_rate": float(np.mean(successes[t])) if t in successes else None}
                for t in tasks}

    def success(r: dict) -> str:
        return "" if r["success_rate"] is None else f"  success {r['success_rate']:.2f}"

    if args.target:  # a sweep: one evaluation per return target, every task conditioned on it
        out = {t: [] for t in tasks}
        for target in args.target:
            worker.set_targets({t: target for t in tasks})
            for t, r in evaluate().items():
                out[t].append({"target": target, **r})
                print(f"{t:28s} target {target:9.1f}  return {r['return_mean']:9.1f} ± {r['return_std']:7.1f}  "
                      f"normalized {r['normalized_score']:.2f}{success(r)}  ({r['episodes']} episodes, seed {args.seed})")
    else:
        # Condition on the return targets of the run's last evaluation (data-relative targets depend
        # on its replay store); runs written before evals.jsonl recorded them use the tasks' own.
        targets = last_eval_targets(run_dir)
        if targets:
            worker.set_targets({t: targets[t] for t in tasks if t in targets})
            print("return targets of the run's last evaluation: "
                  + ", ".join(f"{t} {targets[t]:.1f}" for t in tasks if t in targets))
        out = evaluate()
        for t, r in out.items():
            print(f"{t:28s} return {r['return_mean']:9.1f} ± {r['return_std']:7.1f}  "
                  f"normalized {r['normalized_score']:.2f}{success(r)}  ({r['episodes']} episodes, seed {args.seed})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


# -- entry point -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="frontier",
        description="Train one Decision-Transformer agent on many control tasks (Ray actors, online fine-tuning), "
                    "and measure it against specialists.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("tasks", help="list built-in and plugin tasks",
                       description="List every task frontier can train on (built-in suites and installed plugins), "
                                   "with spaces, expert sources and reference returns. Broken plugins are reported.")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_tasks)

    tr = sub.add_parser(
        "train", help="train the multi-task agent",
        description="Collect expert episodes, pretrain offline, fine-tune online (ODT), evaluate. Writes a run "
                    "directory (config.yaml, tb/, checkpoints/, replay/, summary.json).")
    tr.add_argument("config", nargs="?", help="YAML run config, e.g. configs/quick.yaml")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config key, e.g. --set train.batch_size=64 (repeatable; value parsed as YAML)")
    tr.add_argument("--out", help="run directory (default runs/<config>-<time>)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or crashed run from its last checkpoint")
    tr.add_argument("--address", help="Ray cluster to attach to ('auto' or host:port; default: RAY_ADDRESS, "
                                      "else an embedded local Ray)")
    tr.add_argument("--serial", action="store_true", help="run everything in this process, without Ray")
    tr.add_argument("--strict", action="store_true",
                    help="with --resume: stop at an unreadable replay shard instead of moving it to replay/quarantine/")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a trained run's model",
                        description="Run deterministic evaluation episodes with a run's final model (or latest "
                                    "checkpoint) and print returns and normalized scores.")
    ev.add_argument("run_dir", help="a run directory written by 'frontier train'")
    ev.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    ev.add_argument("--tasks", nargs="+", help="evaluate only these tasks of the run")
    ev.add_argument("--seed", type=int, default=12345, help="environment seed base (default 12345)")
    ev.add_argument("--target", type=float, nargs="+", metavar="RETURN",
                    help="condition every evaluated task on this return instead of the run's last evaluation "
                         "targets; several values evaluate once per value (does the model follow its target?), "
                         "and --json then holds a list per task")
    ev.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ev.set_defaults(func=cmd_eval)
    # Commands defined in their own modules register here: `module.add_parser(sub)`.
    from distributed import experts
    experts.add_parser(sub)
    from distributed import collect

    collect.add_parser(sub)
    from distributed import bench

    bench.add_parser(sub)
    from distributed import compare_cli

    compare_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"frontier {args.command}: error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
