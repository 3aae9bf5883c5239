"""`frontier compare`: parse the command, run the spec's plan (compare/jobs.py), write the
report (compare/report.py)."""
from __future__ import annotations

import argparse

import os
from pathlib import Path

import yaml

from frontier.compare.jobs import execute
from frontier.compare.plan import make_plan
from frontier.compare.report import write_report
from frontier.compare.spec import load_spec
from frontier.distributed.errors import UsageError


def cmd_compare(args) -> int:
    try:
        spec = load_spec(args.spec)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.serial and args.address:
        raise UsageError("--serial runs in one process without Ray; it cannot take --address")
    out = Path(args.out or spec.out or f"runs/compare-{spec.name}")
    saved = out / "spec.yaml"
    if saved.is_file():
        before = yaml.safe_load(saved.read_text())
        if before != yaml.safe_load(Path(args.spec).read_text()):
            raise UsageError(f"--out {out} holds a compare of a different spec ({saved}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    if not saved.is_file():
        saved.write_text(Path(args.spec).read_text())
    plan = make_plan(spec, out)
    print(f"compare {spec.name}: target {spec.target}, {len(spec.seeds)} seeds, output {out}", flush=True)
    errors = execute(plan, out, args.serial, args.address or os.environ.get("RAY_ADDRESS"),
                     log=lambda m: print(m, flush=True))
    results = write_report(spec, plan, out, errors)
    print(f"report: {out / 'report.md'} ({results['status']})")
    return 0 if not errors else 1


def add_parser(sub) -> None:
    """Register `frontier compare` on the CLI's subparsers."""
    c = sub.add_parser(
        "compare", help="generalist vs closest specialist vs scratch on a target task at equal compute",
        description="Run the arms of a comparison spec (scratch, specialist, related, generalist with its "
                    "zero-shot and few-shot scores, and a transfer matrix) for several seeds under one "
                    "learner-FLOPs budget per arm, and write report.md, PNG plots and results.json. Every run "
                    "is a normal run directory (TensorBoard in tb/). Rerunning the same command resumes.",
        epilog="examples:\n  frontier compare configs/compare/idp-2core.yaml      # reruns resume",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("spec", help="comparison spec (YAML; see configs/compare/)")
    c.add_argument("--out", help="output directory (default: the spec's 'out', else runs/compare-<name>)")
    c.add_argument("--serial", action="store_true", help="run every job in this process, one after another")
    c.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local instance)")
    c.set_defaults(func=cmd_compare)
