"""What every benchmark shares: the machine description, side-by-side timing, and result files.

Each benchmark module exposes `run(quick: bool, out: Path) -> dict` and writes, through
`write_results`, `<name>.json` (every figure plus the machine), `<name>.md` (tables) and its PNGs
into `out` (default benchmarks/results/).
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PACKAGES = ("torch", "ray", "gymnasium", "mujoco", "ale-py", "numpy")


def machine() -> dict:
    """CPU model, cores, memory, GPU, load and library versions: where a figure was measured."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        mem_gib = round(kb / 2**20, 1)
    except (OSError, IndexError, ValueError):
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "gpu": gpu,
        "python": platform.python_version(),
        "versions": versions,
        "load_average_1m": os.getloadavg()[0],
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def machine_line(m: dict) -> str:
    gpu = m["gpu"] or "no GPU"
    v = ", ".join(f"{k} {val}" for k, val in m["versions"].items() if val)
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {gpu}; {v}; "
            f"load average {m['load_average_1m']:.2f} at start ({m['date']})")


def interleaved(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each contender once per round, in turn, `rounds` times; each call returns its own figure.

    Round-robin order spreads background load (other processes on a shared machine) over all
    contenders alike, so their ratios stay meaningful when absolute figures drift.
    """
    figures: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            figures[name].append(float(fn()))
    return figures


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(x):
        if isinstance(x, float):
            return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def write_results(out: Path, name: str, data: dict, markdown: str) -> dict:
    """Write <name>.json (data + machine) and <name>.md (title, machine line, body); return the JSON."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": data.get("machine") or machine(), **data}
    tmp = out / f".{name}.json.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, out / f"{name}.json")
    md = f"# Benchmark: {name}\n\nMachine: {machine_line(data['machine'])}\n\n{markdown.strip()}\n"
    (out / f"{name}.md").write_text(md)
    return data


def figure():
    """A matplotlib (Agg) figure and axes; save with `save(fig, path)`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.2), dpi=110)


def save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
