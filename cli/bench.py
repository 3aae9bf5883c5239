"""`frontier bench`: run the benchmarks under benchmarks/ and write their results, by default
under runs/bench/ (ignored by git), so a smoke run (`--quick`) leaves the committed
benchmarks/results/ as they are; `--out benchmarks/results` updates those.

Each benchmark is a module `benchmarks.<name>` with `run(quick: bool, out: Path) -> dict`; it
measures its contenders side by side in one run, prints a table and writes JSON, markdown and PNG
files (see benchmarks/common.py).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from frontier.distributed.errors import UsageError

BENCHMARKS = ("collection", "learner", "replay", "scaling", "learning", "threads", "stability")


def selected(which: list[str]) -> list[str]:
    """The benchmarks named on the command line, in order (none or "all": every one)."""
    unknown = [w for w in which if w not in (*BENCHMARKS, "all")]
    if unknown:
        raise UsageError(f"unknown benchmark {unknown[0]!r} (choose from {', '.join(BENCHMARKS)}, all)")
    return list(BENCHMARKS) if not which or "all" in which else list(dict.fromkeys(which))


def cmd_bench(args) -> int:
    names = selected(args.which)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if args.quick and out.resolve() == COMMITTED:
        raise UsageError(f"--quick results are a smoke run: they do not go into {COMMITTED} (leave --out out)")
    kwargs = {}
    if args.suite:
        if names != ["learning"]:
            raise UsageError("--suite selects suites of the learning benchmark: use it with `frontier bench learning`")
        from frontier.benchmarks import learning

        unknown = [s for s in args.suite if s not in learning.SUITES]
        if unknown:
            raise UsageError(f"unknown learning suite {unknown[0]!r} (choose from {', '.join(learning.SUITES)})")
        try:  # before any work: the suites not run keep their sections from the earlier results
            learning.kept_sections(out, [s for s in learning.SUITES if s not in args.suite])
        except ValueError as e:
            raise UsageError(str(e)) from None
        kwargs["suites"] = args.suite
    for name in names:
        module = importlib.import_module(f"frontier.benchmarks.{name}")
        print(f"== bench {name} ({'quick' if args.quick else 'full'}) -> {out}", flush=True)
        module.run(quick=args.quick, out=out, **kwargs)
    return 0


# Where results go without --out: beside the benchmarks' run directories, not over the committed ones.
DEFAULT_OUT = Path("runs") / "bench"
# The committed results, which a --quick run never writes over.
COMMITTED = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def add_parser(sub) -> None:
    b = sub.add_parser(
        "bench", help="measure collection, learner, replay, scaling, learning and thread performance",
        description="Run benchmarks side by side and write <name>.json, <name>.md and PNG plots. "
                    "collection: env steps/s of the raw simulator, frontier's rollout worker (MLP expert, ODT "
                    "policy) and RLlib's env runner; learner: trained timesteps/s against the ODT reference "
                    "implementation; replay: insert rate, sample latency, memory, learner utilization; "
                    "scaling: env steps/s against rollout actors; learning: normalized score against env "
                    "steps and wall time; threads: learner update time against torch threads and the OpenMP wait "
                    "policy beside competing processes.")
    b.add_argument("which", nargs="*", metavar="BENCHMARK",
                   help=f"benchmarks to run: {', '.join(BENCHMARKS)} or all (default all)")
    b.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke run, minutes)")
    b.add_argument("--suite", action="append", metavar="NAME",
                   help="learning only: run this suite (quick, medium, low; repeatable) and keep the other "
                        "suites' sections from the results in --out")
    b.add_argument("--out", default=str(DEFAULT_OUT),
                   help=f"results directory (default {DEFAULT_OUT}; --out benchmarks/results replaces the committed ones)")
    b.set_defaults(func=cmd_bench)
