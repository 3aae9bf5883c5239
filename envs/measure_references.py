"""Measure random and scripted returns (and success rates) of built-in tasks; print a markdown table.

    python -m frontier.envs.measure_references [--episodes 20] [--seed 1000] [--tasks CartPole-v1 ...]

The built-in specs' random_return / expert_return come from this script's output.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from frontier.envs.experts.base import PolicyExpert, random_controller
from frontier.envs.references import REFERENCE_SEED, reference_expert
from frontier.envs.registry import builtin_tasks


def measure(source, episodes: int, seed: int) -> str:
    """"mean ± std" of the source's returns, plus its success rate where the task has one."""
    eps = list(source.episodes(episodes, seed))
    ret = np.array([e.ret for e in eps])
    success = [e.success for e in eps if e.success is not None]
    return f"{ret.mean():.1f} ± {ret.std():.1f}" + (f" (success {np.mean(success):.2f})" if success else "")


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
        rnd = measure(PolicyExpert(spec, random_controller, "random", "uniform-random"), args.episodes, args.seed)
        scripted = measure(reference_expert(spec), args.episodes, args.seed) if "scripted" in spec.experts else "n/a"
        elapsed = time.perf_counter() - start
        print(
            f"| {spec.name} | {spec.suite} | {rnd} | {scripted} "
            f"| {args.episodes} | {seeds} | {elapsed:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
