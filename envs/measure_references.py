"""Measure random and scripted returns of every built-in task; print a markdown table.

    python -m envs.measure_references [--episodes 20] [--seed 1000] [--tasks CartPole-v1 ...]

The built-in specs' random_return / expert_return come from this script's output.
"""
from __future__ import annotations

import argparse
import time

from envs.references import REFERENCE_SEED, episode_returns, random_returns, reference_expert
from envs.registry import builtin_tasks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20, help="episodes per measurement")
    parser.add_argument("--seed", type=int, default=REFERENCE_SEED, help="env seed of the first episode")
    parser.add_argument("--tasks", nargs="*", help="only these task names (default: all built-ins)")
    args = parser.parse_args(argv)
    specs = builtin_tasks()
    if args.tasks:
        known = {s.name for s in specs}
        unknown = [t for t in args.tasks if t not in known]
        if unknown:
            parser.error(f"unknown task(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        specs = [s for s in specs if s.name in args.tasks]
    seeds = f"{args.seed}..{args.seed + args.episodes - 1}"
    print("| task | suite | random (mean ± std) | scripted (mean ± std) | episodes | seeds | time s |")
    print("|---|---|---|---|---|---|---|")
    for spec in specs:
        start = time.perf_counter()
        rnd = random_returns(spec, args.episodes, args.seed)
        scripted = "n/a"
        if "scripted" in spec.experts:
            ret = episode_returns(reference_expert(spec), args.episodes, args.seed)
            scripted = f"{ret.mean():.1f} ± {ret.std():.1f}"
        elapsed = time.perf_counter() - start
        print(
            f"| {spec.name} | {spec.suite} | {rnd.mean():.1f} ± {rnd.std():.1f} | {scripted} "
            f"| {args.episodes} | {seeds} | {elapsed:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
