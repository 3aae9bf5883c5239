"""The `frontier` command line: one module per command, each with `add_parser(sub)` and its
`cmd_*` function; they parse and check, the runtime (distributed/, envs/, agents/) does the work.

Every command checks its input (task names, config keys and values, files) before any
work starts; a problem is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys

from frontier import __version__
from frontier.cli import bench, collect, compare, evaluate, experts, tasks, train
from frontier.distributed.errors import USAGE_ERROR, UsageError

COMMANDS = (tasks, train, evaluate, experts, collect, bench, compare)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="frontier",
        description="Train one Decision-Transformer agent on many control tasks (Ray actors, online fine-tuning), "
                    "and measure it against specialists.",
    )
    p.add_argument("--version", action="version", version=f"frontier {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"frontier {args.command}: error: {e}", file=sys.stderr)
        return USAGE_ERROR
