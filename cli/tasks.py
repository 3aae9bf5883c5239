"""`frontier tasks`: every task frontier can train on, with spaces, expert sources and references."""
from __future__ import annotations

import argparse

import json
import sys


def cmd_tasks(args) -> int:
    from frontier.envs.registry import all_tasks, plugin_errors

    rows = []
    for name, spec in sorted(all_tasks().items()):
        observation, action = spec.listed_spaces()
        rows.append({
            "name": name,
            "suite": spec.suite,
            "observation": str(observation),
            "action": str(action),
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


def add_parser(sub) -> None:
    t = sub.add_parser("tasks", help="list built-in and plugin tasks",
                       description="List every task frontier can train on (built-in suites and installed plugins), "
                                   "with spaces, expert sources and reference returns. Broken plugins are reported.",
        epilog="examples:\n  frontier tasks\n  frontier tasks --json > tasks.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_tasks)
