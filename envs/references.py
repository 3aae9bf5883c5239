"""Reference returns (random, expert) that define a task's normalized score.

    random_ret, expert_ret = reference_returns(spec)
    score = (ret - random_ret) / (expert_ret - random_ret)

The spec's own values win. Missing ones are measured (random: uniform random actions;
expert: the task's "scripted" source if it has one, else "filtered"), must be finite, and are
kept in the `cache` file the caller names (a run keeps them in its own directory, so fixing a
task's env never meets a stale value from another run), invalidated when the episode count,
seed or time limit differ.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from frontier.envs.experts.base import PolicyExpert, random_controller
from frontier.envs.registry import make_expert
from frontier.envs.spec import TaskSpec

REFERENCE_SEED = 1000  # disjoint from the seeds the scripted controllers were tuned on


def episode_returns(source, episodes: int, seed: int) -> np.ndarray:
    """Returns of `episodes` episodes of an expert source, env seeds seed .. seed + episodes - 1."""
    return np.array([ep.ret for ep in source.episodes(episodes, seed)], dtype=np.float64)


def random_returns(spec: TaskSpec, episodes: int, seed: int) -> np.ndarray:
    """Returns of uniform random actions."""
    return episode_returns(PolicyExpert(spec, random_controller, "random", "uniform-random"), episodes, seed)


def reference_expert(spec: TaskSpec):
    """The source that defines the expert reference, without the DART collection noise: the
    reference is what the expert itself achieves, not its perturbed data-collection runs."""
    source = make_expert(spec, expert_kind(spec))
    if isinstance(source, PolicyExpert):
        source.noise = 0.0
    return source


def expert_kind(spec: TaskSpec) -> str:
    """The source that defines the expert reference: "scripted" if the task has one, else "filtered"."""
    return "scripted" if "scripted" in spec.experts else "filtered"


def _finite(spec: TaskSpec, what: str, value: float) -> float:
    if not np.isfinite(value):
        raise ValueError(f"task {spec.name!r}: its {what} reference return is {value} (the env produced a "
                         "non-finite reward); fix the env or give the TaskSpec its reference returns")
    return value


def reference_returns(spec: TaskSpec, episodes: int = 20, seed: int = REFERENCE_SEED,
                      cache: str | os.PathLike | None = None) -> tuple[float, float]:
    """(random_return, expert_return) for the task, measured where the spec has none; measured
    values are kept in the JSON file `cache` (none: measured on every call)."""
    if spec.random_return is not None and spec.expert_return is not None:
        return float(spec.random_return), float(spec.expert_return)
    path = Path(cache) if cache is not None else None
    stored = json.loads(path.read_text()) if path is not None and path.exists() else {}
    key = {"episodes": episodes, "seed": seed, "max_episode_steps": spec.max_episode_steps}
    entry = stored.get(spec.name)
    if entry is None or any(entry.get(k) != v for k, v in key.items()):
        entry = dict(key)
        if spec.random_return is None:
            entry["random"] = _finite(spec, "random", float(random_returns(spec, episodes, seed).mean()))
        if spec.expert_return is None:
            entry["expert"] = _finite(spec, "expert",
                                      float(episode_returns(reference_expert(spec), episodes, seed).mean()))
        if path is not None:
            # Re-read before writing: another process may have stored other tasks meanwhile.
            stored = json.loads(path.read_text()) if path.exists() else {}
            stored[spec.name] = {**stored.get(spec.name, {}), **entry}
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(stored, indent=1, sort_keys=True))
            tmp.replace(path)  # atomic, so concurrent readers never see half a file
            entry = stored[spec.name]
    random_ret = spec.random_return if spec.random_return is not None else entry["random"]
    expert_ret = spec.expert_return if spec.expert_return is not None else entry["expert"]
    return float(random_ret), float(expert_ret)
