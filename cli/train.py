"""`frontier train`: check the config and expert settings, make the run directory, run it."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

from frontier.distributed.errors import UsageError


def _load_config(args):
    from frontier.distributed import config as config_mod
    from frontier.envs.registry import get_task

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise UsageError(f"--resume {run_dir}: not a run directory (no config.yaml)")
        if args.config:
            raise UsageError("give either CONFIG or --resume RUN_DIR, not both")
        cfg = config_mod.load(run_dir / "config.yaml", args.set or [])
    else:
        if not args.config:
            raise UsageError("train needs a CONFIG file (or --resume RUN_DIR)")
        cfg = config_mod.load(args.config, args.set or [])
        run_dir = Path(args.out) if args.out else Path("runs") / (
            Path(args.config).stem + "-" + datetime.now().strftime("%Y%m%d-%H%M%S"))
        if (run_dir / "config.yaml").exists():
            raise UsageError(f"--out {run_dir} already holds a run; use --resume {run_dir} to continue it")
    for name in cfg.tasks:
        try:
            get_task(name)
        except KeyError as e:
            raise UsageError(e.args[0])
    if not args.resume:  # expert settings are checked before any work or run directory exists
        from frontier.envs.registry import make_expert

        for name in cfg.tasks:
            kind = cfg.experts.sources.get(name, cfg.experts.source)
            try:
                make_expert(get_task(name), kind)
            except KeyError as e:
                raise UsageError(f"experts for {name}: {e.args[0]}")
            except ValueError as e:
                raise UsageError(f"experts for {name}: {e}")
    return cfg, run_dir


def cmd_train(args) -> int:
    try:
        cfg, run_dir = _load_config(args)
    except ValueError as e:
        raise UsageError(str(e))
    if args.print_config:  # the resolved config, every default filled in; nothing is written
        import yaml

        from frontier.distributed import config as config_mod

        print(yaml.safe_dump(config_mod.to_dict(cfg), sort_keys=False), end="")
        return 0
    if args.strict and not args.resume:
        raise UsageError("--strict applies to --resume RUN_DIR (an unreadable replay shard stops the resume)")
    if args.serial and args.address:
        raise UsageError("--serial runs in one process without Ray; it cannot take --address")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    from frontier.distributed import run_log

    with run_log.capture(run_dir / "run.log"):  # what the terminal shows, Ray workers' lines included
        return _run(args, cfg, run_dir, created)


def _run(args, cfg, run_dir: Path, created: bool) -> int:
    print(f"run directory: {run_dir}", file=sys.stderr, flush=True)
    try:  # setting up measures the tasks' missing reference returns: a broken env fails here
        from frontier.distributed.trainer import Trainer

        if args.serial:
            from frontier.distributed.local_executor import LocalExecutor

            executor = LocalExecutor()
        else:
            from frontier.distributed.ray_executor import RayExecutor

            executor = RayExecutor(args.address or os.environ.get("RAY_ADDRESS"))
        runner = Trainer(cfg, run_dir, executor, resume=bool(args.resume), strict=args.strict)
    except (ValueError, RuntimeError) as e:  # a bad setting, or an env broken before training starts
        if created:  # nothing half-written
            shutil.rmtree(run_dir, ignore_errors=True)
        raise UsageError(str(e))
    summary = runner.run()
    _print_summary(summary)
    from frontier.distributed.run_files import EXIT_CODES

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


def add_parser(sub) -> None:
    tr = sub.add_parser(
        "train", help="train the multi-task agent",
        description="Collect expert episodes, pretrain offline, fine-tune online (ODT), evaluate. Writes a run "
                    "directory (config.yaml, tb/, checkpoints/, replay/, summary.json).",
        epilog="examples:\n"
               "  frontier train configs/quick.yaml                          # embedded local Ray\n"
               "  frontier train configs/quick.yaml --serial --set seed=1    # one process, another seed\n"
               "  frontier train configs/quick.yaml --print-config           # every setting, defaults filled in\n"
               "  frontier train --resume runs/quick-20261207-101500         # continue a stopped run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("config", nargs="?", help="YAML run config, e.g. configs/quick.yaml")
    tr.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config key, e.g. --set train.batch_size=64 (repeatable; value parsed as YAML)")
    tr.add_argument("--out", help="run directory (default runs/<config>-<time>)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or crashed run from its last checkpoint")
    tr.add_argument("--address", help="Ray cluster to attach to ('auto' or host:port; default: RAY_ADDRESS, "
                                      "else an embedded local Ray)")
    tr.add_argument("--serial", action="store_true", help="run everything in this process, without Ray (the same schedule, one call at a time)")
    tr.add_argument("--print-config", action="store_true",
                    help="print the resolved config (every default filled in, overrides applied) and exit")
    tr.add_argument("--strict", action="store_true",
                    help="with --resume: stop at an unreadable replay shard instead of moving it to replay/quarantine/")
    tr.set_defaults(func=cmd_train)
