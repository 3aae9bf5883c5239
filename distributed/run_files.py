"""A run's files and counters: the counters it accumulates (`RunState`), its checkpoints (written
atomically with a manifest; the newest intact one found for --resume), the lines of evals.jsonl,
summary.json's compute and fault sections, and how a run ends (exit codes, one-line errors,
SIGTERM).

Run directory:
  config.yaml        the resolved config
  tb/                TensorBoard events
  checkpoints/       ckpt-<updates>/ (model.safetensors, learner_state.pt, run_state.json)
  replay/            persisted episodes (see distributed/replay.py)
  summary.json       rewritten periodically and at the end
  evals.jsonl        one line per evaluation: counters (updates, env steps, learner FLOPs and
                     seconds, actor CPU-s) and the returns per task, for curves against compute
  val.jsonl          one line per held-out measurement (distributed/monitor.py)
"""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Callable

from frontier.agents.storage import sha256_file
from frontier.distributed.monitor import write_json_atomic

KEEP_CHECKPOINTS = 3


# run_state.json key of a checkpoint's manifest: {file name: {"bytes": size, "sha256": hex digest}}.
MANIFEST_KEY = "files"


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why the checkpoint directory `ckpt` cannot be resumed from; None if it is intact (every file
    of its manifest present with the size and hash it was written with)."""
    try:
        state = json.loads((ckpt / "run_state.json").read_text())
        manifest = state[MANIFEST_KEY] if MANIFEST_KEY in state else None
    except (OSError, ValueError, TypeError) as e:
        return f"run_state.json unreadable ({type(e).__name__})"
    if manifest is None:  # written before checkpoints carried a manifest: the files must exist
        names = ("model.safetensors", "learner_state.pt")
        missing = [n for n in names if not (ckpt / n).is_file()]
        return f"{missing[0]} missing" if missing else None
    for name, want in manifest.items():
        path = ckpt / name
        if not path.is_file():
            return f"{name} missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {want['bytes']} when written"
        if sha256_file(path) != want["sha256"]:
            return f"{name} does not match the hash it was written with"
    return None


def latest_checkpoint(run_dir: Path, skipped: list[tuple[Path, str]] | None = None) -> Path | None:
    """The newest intact checkpoint of `run_dir`; each newer one that is not intact is appended to
    `skipped` as (directory, why)."""
    for ckpt in sorted((Path(run_dir) / "checkpoints").glob("ckpt-*"), reverse=True):
        why = checkpoint_problem(ckpt)
        if why is None:
            return ckpt
        if skipped is not None:
            skipped.append((ckpt, why))
    return None


def write_checkpoint(run_dir: Path, state: "RunState", save: Callable[[str], None]) -> Path:
    """Write ckpt-<updates>/ atomically: `save(directory)` writes the learner's files into a
    temporary directory, then run_state.json with their manifest, then the rename; keeps the
    newest KEEP_CHECKPOINTS."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"ckpt-{state.updates:08d}"
    tmp = root / f".tmp-{state.updates:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save(str(tmp))
    manifest = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                for p in sorted(tmp.iterdir()) if p.is_file()}
    write_json_atomic(tmp / "run_state.json", {**state.to_dict(), MANIFEST_KEY: manifest})
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in sorted(root.glob("ckpt-*"))[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_run_state(ckpt: Path) -> "RunState":
    """The counters a checkpoint saved."""
    saved = json.loads((Path(ckpt) / "run_state.json").read_text())
    saved.pop(MANIFEST_KEY, None)
    return RunState.from_dict(saved)


class RunState:
    """Counters a run accumulates; saved with each checkpoint and restored by --resume."""

    def __init__(self):
        self.updates = 0
        self.env_steps_by_source: dict[str, int] = {}
        self.actor_cpu_s = 0.0
        self.learner_device_s = 0.0
        self.learner_flops = 0.0
        self.trained_timesteps = 0
        self.wall_s = 0.0
        self.experts_done = False
        self.episodes_dropped = 0
        self.episodes_dropped_by_cause: dict[str, int] = {}  # "raised", "non_finite", "hung"
        self.actor_restarts = 0
        self.rollout_actors_lost = 0  # times a rollout actor was found down (Ray driver)
        self.rollout_calls_timed_out = 0  # rollout actors killed for a call past rollout.call_timeout_s (Ray driver)
        self.shards_quarantined = 0  # unreadable replay shards moved aside by --resume
        self.core_restores = 0  # times the learner and replay store actors were rebuilt after one was lost (Ray driver)
        self.updates_redone = 0  # updates made again since: those after the checkpoint the learner came back from
        self.evaluations = 0  # evaluations started: the next one's number names its episodes (RolloutWorker.evaluate)
        self.replay_rng: dict | None = None  # the replay store's sampling stream at the checkpoint
        self.task_weights: dict[str, float] = {}  # replay.task_sampling val_nll: the batch shares now
        self.val_nll: dict[str, float] = {}  # ... and the held-out NLL's moving average they follow

    @property
    def env_steps(self) -> int:
        return sum(self.env_steps_by_source.values())

    def add_steps(self, source: str, n: int) -> None:
        self.env_steps_by_source[source] = self.env_steps_by_source.get(source, 0) + int(n)

    def add_dropped(self, by_cause: dict[str, int]) -> None:
        """Count dropped episodes, {cause: n} (envs.deadline.fault_cause)."""
        for cause, n in by_cause.items():
            self.episodes_dropped += n
            self.episodes_dropped_by_cause[cause] = self.episodes_dropped_by_cause.get(cause, 0) + n

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        """A checkpoint's counters; one it lacks (written by an older release) keeps its default."""
        s = cls()
        s.__dict__.update(d)
        return s


    def rates(self, wall_s: float) -> dict[str, float]:
        """Per-second rates over the run's `wall_s` (summary.json's "throughput")."""
        wall = max(wall_s, 1e-9)
        return {"env_steps_per_s": self.env_steps / wall, "updates_per_s": self.updates / wall,
                "trained_timesteps_per_s": self.trained_timesteps / wall,
                "learner_utilization": self.learner_device_s / wall}

    def compute(self) -> dict:
        """summary.json's "compute" section."""
        return {"learner_device_s": self.learner_device_s, "learner_flops": self.learner_flops,
                "actor_cpu_s": self.actor_cpu_s, "env_steps_by_source": dict(self.env_steps_by_source)}

    def faults(self) -> dict:
        """summary.json's "faults" section."""
        return {"actor_restarts": self.actor_restarts, "rollout_actors_lost": self.rollout_actors_lost,
                "rollout_calls_timed_out": self.rollout_calls_timed_out, "episodes_dropped": self.episodes_dropped,
                "episodes_dropped_by_cause": dict(self.episodes_dropped_by_cause),
                "replay_shards_quarantined": self.shards_quarantined, "core_restores": self.core_restores,
                "updates_redone": self.updates_redone}

    def counters(self) -> dict:
        """The counters an evaluation's line in evals.jsonl carries (those of the weights it evaluates)."""
        return {"updates": self.updates, "env_steps": self.env_steps, "learner_flops": self.learner_flops,
                "learner_device_s": self.learner_device_s, "actor_cpu_s": self.actor_cpu_s}


def eval_line(episodes, at: dict, targets: dict[str, float]) -> dict:
    """An evaluation's line of evals.jsonl: the counters `at` (those of the weights evaluated),
    the returns per task, the return targets it was conditioned on, and where tasks have a
    success condition, the successes per task."""
    returns: dict[str, list[float]] = {}
    successes: dict[str, list[bool]] = {}
    for e in episodes:
        returns.setdefault(e.task, []).append(e.ret)
        if e.success is not None:
            successes.setdefault(e.task, []).append(bool(e.success))
    line = {**at, "returns": returns, "targets": targets}
    if successes:
        line["successes"] = successes
    return line


def append_jsonl(path: Path, line: dict) -> None:
    """One JSON line appended to `path` (evals.jsonl)."""
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line_error(e: BaseException) -> str:
    """"Type: message" on one line, for summary.json: an error raised in a Ray actor arrives as a
    RayTaskError whose text holds colour codes and the remote traceback; its cause is what happened."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    lines = [line.strip() for line in _ANSI.sub("", str(e)).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (what timeout, kill, Kubernetes, Slurm and `ray job stop` send). A
    KeyboardInterrupt, so that fault handlers for Exception let it through, and so that Ray's
    blocking calls, which turn any other exception from a signal handler into a SystemError,
    stop on it (they re-raise it as a plain KeyboardInterrupt: `finish` remembers the signal)."""


# Exit status of `frontier train` by how the run ended (documented in the README).
EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 130, "terminated": 143}


class _Signals:
    terminated = False
    main_thread = False

    def ignore_sigterm(self) -> None:
        if self.main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def sigterm_interrupts():
    """Inside, SIGTERM raises Terminated (main thread only; elsewhere signals stay as they are);
    yields an object whose `terminated` says whether it arrived and whose `ignore_sigterm()`
    shields what follows (a final checkpoint) from a second one."""
    signals = _Signals()
    signals.main_thread = threading.current_thread() is threading.main_thread()

    def on_sigterm(signum, frame):
        signals.terminated = True
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_sigterm) if signals.main_thread else None
    try:
        yield signals
    finally:
        if signals.main_thread:
            signal.signal(signal.SIGTERM, previous)
