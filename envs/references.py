"""Reference returns (random, expert) that define a task's normalized score.

    random_ret, expert_ret = reference_returns(spec)
    score = (ret - random_ret) / (expert_ret - random_ret)

The spec's own values win. Missing ones are measured (random: uniform random actions;
expert: the task's "scripted" source if it has one, else "filtered") and cached in
$FRONTIER_CACHE_DIR/references.json (default ~/.cache/frontier), keyed by task name and
invalidated when the episode count, seed or time limit differ.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from envs.experts.base import PolicyExpert, make_expert, random_controller
from envs.spec import TaskSpec

REFERENCE_SEED = 1000  # disjoint from the seeds the scripted controllers were tuned on


def cache_path() -> Path:
    root = os.environ.get("FRONTIER_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "frontier")
    return Path(root) / "references.json"


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


def reference_returns(spec: TaskSpec, episodes: int = 20, seed: int = REFERENCE_SEED) -> tuple[float, float]:
    """(random_return, expert_return) for the task, measured and cached where the spec has none."""
    if spec.random_return is not None and spec.expert_return is not None:
        return float(spec.random_return), float(spec.expert_return)
    path = cache_path()
    cache = json.loads(path.read_text()) if path.exists() else {}
    key = {"episodes": episodes, "seed": seed, "max_episode_steps": spec.max_episode_steps}
    entry = cache.get(spec.name)
    if entry is None or any(entry.get(k) != v for k, v in key.items()):
        entry = dict(key)
        if spec.random_return is None:
            entry["random"] = float(random_returns(spec, episodes, seed).mean())
        if spec.expert_return is None:
            entry["expert"] = float(episode_returns(reference_expert(spec), episodes, seed).mean())
        # Re-read before writing: another process may have cached other tasks meanwhile.
        cache = json.loads(path.read_text()) if path.exists() else {}
        cache[spec.name] = {**cache.get(spec.name, {}), **entry}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
        tmp.replace(path)  # atomic, so concurrent readers never see half a file
        entry = cache[spec.name]
    random_ret = spec.random_return if spec.random_return is not None else entry["random"]
    expert_ret = spec.expert_return if spec.expert_return is not None else entry["expert"]
    return float(random_ret), float(expert_ret)
