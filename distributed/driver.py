"""What a training run keeps besides its loop (distributed/trainer.py): the run's counters
(`RunState`), checkpoints and how to find the newest intact one, observation statistics, the
data-relative return targets, and how a run ends (exit codes, one-line errors, SIGTERM)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from frontier.agents.storage import sha256_file
from frontier.envs.registry import get_task

KEEP_CHECKPOINTS = 3


def resolve_tasks(names: list[str]):
    """TaskSpecs for `names`; KeyError naming an unknown task."""
    return [get_task(n) for n in names]


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


# Expert data can be nearly constant in some dimensions (an LQR-held pendulum, RAM bytes
# that never change): without a floor, the first deviation at run time would reach the
# model as a huge input.
MIN_OBSERVATION_STD = 0.01


def observation_stats(episodes) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of vector observations, std floored at MIN_OBSERVATION_STD."""
    obs = np.concatenate([e.observations for e in episodes]).astype(np.float64)
    return obs.mean(0), np.maximum(obs.std(0), MIN_OBSERVATION_STD)


def return_stats(episodes, reward_scale: float) -> tuple[float, float, float, float]:
    """Mean, std, min and max of the scaled returns of `episodes` (the return head's units and range)."""
    returns = np.array([e.ret for e in episodes], dtype=np.float64) * reward_scale
    return float(returns.mean()), float(returns.std()), float(returns.min()), float(returns.max())


# The replay statistic each data-relative rule of train.return_targets takes as its reference return.
DATA_TARGET_STAT = {"data": "best_return", "top": "top_return"}


def data_targets(specs, references: dict, stats: dict, mode: str, rule: str, scale: float) -> dict[str, float]:
    """{task: return target} for rollout `mode` from the replay store's stats under `rule` ("data":
    the best return ever stored, "top": the mean of the best 10% stored now): `scale` times the
    reference return's distance from the random return, capped at the task's own target for
    `mode` and never below the reference; tasks with no episode yet are left out."""
    out = {}
    for spec in specs:
        best = stats[spec.name][DATA_TARGET_STAT[rule]]
        if best is None:
            continue
        random_ret = references[spec.name][0]
        above = random_ret + scale * (best - random_ret)
        out[spec.name] = min(spec.return_target(mode), max(best, above))
    return out


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
        self.task_weights: dict[str, float] = {}  # replay.task_sampling val_error: the batch shares now

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
