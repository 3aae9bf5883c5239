"""`frontier collect`: write an expert dataset of one task (envs.datasets format).

    frontier collect CartPole-v1 --source scripted --episodes 100 --out data/cartpole
    frontier collect Pendulum-v1 --source filtered --episodes 50 --out data/pend --export-minari frontier/pendulum-v0
    frontier collect Hopper-v5 --source minari --minari-id mujoco/hopper/expert-v0 --out data/hopper
    frontier collect CartPole-v1 --source dataset --dataset data/cartpole --episodes 10 --seed 5 --out data/cp10

Every input is checked before anything is generated or written; a problem is one line
and exit status 2, and the output directory is left as it was. Minari datasets are read
from and written to local directories only (`--minari-root`, default
$MINARI_DATASETS_PATH or ~/.minari/datasets); nothing is downloaded.
"""
from __future__ import annotations

import argparse

import os
from pathlib import Path

from frontier.distributed.errors import UsageError

# Sources that are not a task's expert kinds: a stored dataset, a Minari dataset.
DATASET_SOURCE = "dataset"
MINARI_SOURCE = "minari"


def default_minari_root() -> Path:
    """Where Minari keeps local datasets: $MINARI_DATASETS_PATH, else ~/.minari/datasets."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def _check(args):
    """Validate every argument; returns (spec, expert source or None, Minari root). Raises UsageError."""
    from frontier.envs.datasets import DatasetExpert, _minari_data_path, check_minari_id, minari_dataset_dir
    from frontier.envs.registry import make_expert
    from frontier.envs.registry import get_task

    try:
        spec = get_task(args.task)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} already exists and is not empty")
    if args.episodes is not None and args.episodes <= 0:
        raise UsageError(f"--episodes must be > 0, got {args.episodes}")
    if args.dataset is not None and args.source != DATASET_SOURCE:
        raise UsageError(f"--dataset is only for --source {DATASET_SOURCE}")
    if args.minari_id is not None and args.source != MINARI_SOURCE:
        raise UsageError(f"--minari-id is only for --source {MINARI_SOURCE}")
    root = Path(args.minari_root) if args.minari_root else default_minari_root()
    if args.export_minari is not None:
        try:
            check_minari_id(args.export_minari)
        except ValueError as e:
            raise UsageError(f"--export-minari: {e}") from None
        if minari_dataset_dir(root, args.export_minari).exists():
            raise UsageError(f"--export-minari: Minari dataset {args.export_minari!r} already exists under {root}")
    source = None
    if args.source == MINARI_SOURCE:
        if args.minari_id is None:
            raise UsageError(f"--source {MINARI_SOURCE} needs --minari-id ID")
        try:
            _minari_data_path(root, args.minari_id)
        except ValueError as e:
            raise UsageError(f"--minari-id: {e}") from None
    else:
        if args.episodes is None:
            raise UsageError(f"--source {args.source} needs --episodes N")
        if args.source == DATASET_SOURCE:
            if args.dataset is None:
                raise UsageError(f"--source {DATASET_SOURCE} needs --dataset PATH")
            try:
                source = DatasetExpert(spec, args.dataset)
            except ValueError as e:
                raise UsageError(str(e)) from None
            if args.episodes > source.count:
                raise UsageError(f"--episodes {args.episodes}: dataset {args.dataset} holds only {source.count}")
        else:
            try:
                source = make_expert(spec, args.source)
            except KeyError as e:
                raise UsageError(e.args[0]) from None
    return spec, source, root


def _collect(args, spec, source) -> dict:
    """Roll or copy `args.episodes` episodes into `args.out` with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from frontier.envs.datasets import DatasetWriter, ProductionTimer
    from frontier.envs.seeding import stream_seed

    with DatasetWriter(args.out, spec.name, source.kind) as writer, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[ret]}"), console=Console(stderr=True), transient=True,
    ) as progress:
        bar = progress.add_task(f"{spec.name} ({source.kind})", total=args.episodes, ret="")
        seed = args.seed if args.seed is not None else 0 if args.source == DATASET_SOURCE else stream_seed(
            "expert", 0, spec.name)
        episodes = ProductionTimer(source.episodes(args.episodes, seed))
        for ep in episodes:
            writer.add(ep)
            progress.update(bar, advance=1, ret=f"last return {ep.ret:.1f}")
        extra = {"seed": seed}
        if args.source == DATASET_SOURCE:
            # Copying costs nothing in env steps; what the data cost to produce stays on record.
            extra["derived_from"] = {"path": str(source.path), "name": source.policy_id, "cost": source.production_cost}
        return writer.finish({"env_steps": int(source.env_steps), "cpu_s": episodes.cpu_s, "gpu_s": 0.0}, extra)


def cmd_collect(args) -> int:
    from frontier.envs.datasets import export_minari, import_minari

    spec, source, root = _check(args)
    try:
        if args.source == MINARI_SOURCE:
            record = import_minari(root, args.minari_id, args.out, spec, args.episodes)
        else:
            record = _collect(args, spec, source)
        if args.export_minari is not None:
            target = export_minari(args.out, root, args.export_minari, spec)
    except ValueError as e:  # bad stored data (corrupt file, mismatched spaces): nothing half-written remains
        raise UsageError(str(e)) from None
    r, c = record["returns"], record["cost"]
    print(f"{record['episodes']} episodes of {spec.name} ({args.source}) -> {args.out}: return {r['mean']:.1f} ± "
          f"{r['std']:.1f} (min {r['min']:.1f}, median {r['median']:.1f}, max {r['max']:.1f}), {record['steps']} steps stored, cost {c['env_steps']} env steps, {c['cpu_s']:.2f} CPU-s"
          + (f"; exported to Minari {args.export_minari!r} at {target}" if args.export_minari is not None else ""))
    return 0


def add_parser(sub) -> None:
    """Register `frontier collect` on the CLI's subparsers."""
    c = sub.add_parser(
        "collect", help="write an expert dataset of one task",
        description="Collect whole episodes of TASK from an expert source (the task's kinds, e.g. scripted, "
                    "filtered, rl), copy them from a stored dataset, or import a local Minari dataset, into a "
                    "dataset directory (dataset.json with provenance and cost, episodes-*.npz). Optionally "
                    "export the result as a Minari dataset. Nothing is downloaded.",
        epilog="examples:\n  frontier collect CartPole-v1 --source scripted --episodes 50 --out data/cartpole\n  frontier collect Hopper-v5 --source rl --episodes 20 --out data/hopper        # a zoo policy\n  frontier collect CartPole-v1 --source dataset --dataset data/cartpole --episodes 10 --out data/copy",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("task", help="task name (see 'frontier tasks')")
    c.add_argument("--source", required=True, metavar="KIND",
                   help="an expert kind of the task (rl, scripted, filtered, ...), 'dataset' or 'minari'")
    c.add_argument("--episodes", type=int, help="episodes to write (required except for --source minari: default all)")
    c.add_argument("--out", required=True, help="dataset directory to create (must not exist or be empty)")
    c.add_argument("--seed", type=int, default=None,
                   help="first env seed (episode j uses seed+j; --source dataset: first episode index) (default: "
                        "index 0 for --source dataset, else the task's expert seed stream of a run with seed 0, "
                        "clear of the seeds the reference returns were measured on)")
    c.add_argument("--dataset", metavar="PATH", help="dataset directory to copy from (--source dataset)")
    c.add_argument("--minari-id", metavar="ID", help="Minari dataset id to import (--source minari)")
    c.add_argument("--minari-root", metavar="DIR",
                   help="local Minari datasets directory (default $MINARI_DATASETS_PATH or ~/.minari/datasets)")
    c.add_argument("--export-minari", metavar="ID", help="also export the written dataset as this Minari dataset id")
    c.set_defaults(func=cmd_collect)
