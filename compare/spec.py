"""The comparison spec (`frontier compare SPEC.yaml`): arms, sources, budgets, and its checks."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from frontier.distributed import config as config_mod


ARMS = ("scratch", "specialist", "related", "generalist")
MEASURES = ("list", "spaces")
# Keys of the base run config that compare sets itself for every run.
RESERVED_RUN_KEYS = ("tasks", "seed", "init_from", "init_task_map")
FLOPS_KEYS = ("budget_flops", "source_flops", "pretrain_flops", "matrix_flops")


@dataclass
class ClosestConfig:
    measure: str = "list"
    """How the specialist's source is chosen: "list" (the first of `order`) or "spaces" (among the
    sources with T's observation and action spaces, the one whose single-task model, run on T as
    it is, returns the most)."""
    order: list[str] = field(default_factory=list)
    """Sources, closest to T first. Required for "list"; for "spaces", the fallback when no source
    shares T's spaces (without it that case is an error)."""


@dataclass
class FewShotConfig:
    episodes: int = 5
    """Demonstrations of T for few-shot adaptation."""
    updates: int = 200
    """Updates of T's adapter, head and task embedding on them, with the pretrained transformer frozen."""


@dataclass
class CompareSpec:
    name: str = ""
    """Name of the comparison (the default output directory's last part)."""
    target: str = ""
    """The target task T."""
    sources: list[str] = field(default_factory=list)
    """Source tasks: the generalist pretrains on all of them."""
    related: list[str] = field(default_factory=list)
    """The sources nearest to T, for the related arm's pretraining."""
    closest: ClosestConfig = field(default_factory=ClosestConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """One run of every arm per seed."""
    budget_flops: float = 0.0
    """Learner FLOPs per arm, pretraining and source models included."""
    source_flops: float = 0.0
    """Learner FLOPs of each single-task source model."""
    pretrain_flops: float = 0.0
    """Learner FLOPs of the related and generalist multi-task pretraining."""
    matrix_flops: float = 0.0
    """Learner FLOPs per transfer-matrix cell, the source model included (0: no matrix)."""
    expert_episodes: int = 20
    """Expert episodes per source task and seed for pretraining and single-task models."""
    target_episodes: int = 20
    """Demonstrations of the target (and of every matrix target) that fine-tuning and scratch get."""
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)
    levels: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.95])
    """Normalized scores whose compute cost the report tabulates."""
    out: str = ""
    """Default output directory ("": runs/compare-<name>)."""
    run: dict = field(default_factory=dict)
    """Base run config of every run (model, learner, replay, train, experts.source/sources,
    rollout, ...; see configs/quick.yaml). train.pretrain_updates + online_updates must be
    enough for the FLOPs budgets to stop training before they do."""


# -- the spec ----------------------------------------------------------------------------


def load_spec(path: str | Path) -> CompareSpec:
    """Read and check a spec (ValueError naming the offending key or value)."""
    return spec_from_dict(config_mod.read_yaml_mapping(path, "spec file"))


def spec_from_dict(data: dict) -> CompareSpec:
    data = copy.deepcopy(data)
    run = data.pop("run", {})
    if not isinstance(run, dict):
        raise ValueError(f"config key 'run' must be a mapping, got {run!r}")
    for key in FLOPS_KEYS:
        # YAML 1.1 reads 4.0e8 (no sign in the exponent) as a string; take it as the number it means.
        if isinstance(data.get(key), str):
            try:
                data[key] = float(data[key])
            except ValueError:
                raise ValueError(f"config key '{key}' must be a number, got {data[key]!r}") from None
    spec = config_mod._build(CompareSpec, data)
    spec.run = run
    validate_spec(spec)
    return spec


def validate_spec(spec: CompareSpec) -> None:
    from frontier.envs.registry import get_task

    if not spec.name:
        raise ValueError("config key 'name' must be set")
    if not spec.target:
        raise ValueError("config key 'target' must name the target task")
    if not spec.sources:
        raise ValueError("config key 'sources' must name at least one source task")
    for key, names in {"target": [spec.target], "sources": spec.sources, "related": spec.related,
                       "closest.order": spec.closest.order}.items():
        for n in names:
            try:
                get_task(n)
            except KeyError as e:
                raise ValueError(f"config key '{key}': {e.args[0]}") from None
    if spec.target in spec.sources:
        raise ValueError(f"config key 'sources': the target {spec.target!r} cannot be a source")
    for key, names in {"sources": spec.sources, "related": spec.related, "seeds": spec.seeds,
                       "closest.order": spec.closest.order}.items():
        if len(set(names)) != len(names):
            raise ValueError(f"config key '{key}' lists an entry twice: {names}")
    for key, names in {"related": spec.related, "closest.order": spec.closest.order}.items():
        outside = [n for n in names if n not in spec.sources]
        if outside:
            raise ValueError(f"config key '{key}': {outside[0]!r} is not in 'sources'")
    if not spec.related:
        raise ValueError("config key 'related' must name at least one source")
    if spec.closest.measure not in MEASURES:
        raise ValueError(f"config key 'closest.measure' must be one of {', '.join(MEASURES)}, "
                         f"got {spec.closest.measure!r}")
    if spec.closest.measure == "list" and not spec.closest.order:
        raise ValueError("config key 'closest.order' must list sources for closest.measure 'list'")
    if spec.closest.measure == "spaces":
        candidates, fell_back = same_spaces(spec.target, spec.sources, spec.closest.order)  # raises when neither works
        if not fell_back and len(candidates) * spec.source_flops >= spec.budget_flops:
            raise ValueError(f"closest.measure 'spaces' charges the specialist every candidate's model: "
                             f"{len(candidates)} x source_flops ({spec.source_flops:g}) must be below budget_flops "
                             f"({spec.budget_flops:g}), or the arm has nothing left for fine-tuning")
    if not spec.seeds:
        raise ValueError("config key 'seeds' must list at least one seed")
    for key in ("budget_flops", "source_flops", "pretrain_flops"):
        if getattr(spec, key) <= 0:
            raise ValueError(f"config key '{key}' must be > 0, got {getattr(spec, key)}")
    if spec.matrix_flops < 0:
        raise ValueError(f"config key 'matrix_flops' must be >= 0, got {spec.matrix_flops}")
    for key in ("source_flops", "pretrain_flops"):
        if getattr(spec, key) >= spec.budget_flops:
            raise ValueError(f"config key '{key}' ({getattr(spec, key):g}) must be below budget_flops "
                             f"({spec.budget_flops:g}): the arm would have nothing left for fine-tuning")
    if spec.matrix_flops and spec.matrix_flops <= spec.source_flops:
        raise ValueError(f"config key 'matrix_flops' ({spec.matrix_flops:g}) must exceed source_flops "
                         f"({spec.source_flops:g}), which every transferred cell pays first")
    for key in ("expert_episodes", "target_episodes", "few_shot.episodes", "few_shot.updates"):
        v = getattr(spec.few_shot, key.split(".")[1]) if "." in key else getattr(spec, key)
        if v <= 0:
            raise ValueError(f"config key '{key}' must be > 0, got {v}")
    if spec.few_shot.episodes > spec.target_episodes:
        raise ValueError(f"config key 'few_shot.episodes' ({spec.few_shot.episodes}) exceeds target_episodes "
                         f"({spec.target_episodes}): few-shot draws from the target's demonstrations")
    for lv in spec.levels:
        if not 0 < lv <= 1.5:
            raise ValueError(f"config key 'levels' holds {lv}, outside (0, 1.5]")
    reserved = [k for k in RESERVED_RUN_KEYS if k in spec.run]
    if reserved:
        raise ValueError(f"config key 'run.{reserved[0]}' is set by compare for every run; remove it")
    try:
        base = config_mod.from_dict({**spec.run, "tasks": all_tasks(spec)})
    except ValueError as e:
        raise ValueError(f"in 'run': {e}") from None
    for task in all_tasks(spec):
        kind = base.experts.sources.get(task, base.experts.source)
        if kind not in get_task(task).experts:
            raise ValueError(f"config key 'run.experts': task {task!r} has no expert of kind {kind!r} "
                             f"(kinds: {', '.join(sorted(get_task(task).experts))})")


def all_tasks(spec: CompareSpec) -> list[str]:
    return [spec.target, *spec.sources]


def same_spaces(target: str, sources: list[str], fallback: list[str] = ()) -> tuple[list[str], bool]:
    """(the sources whose observation and action spaces equal the target's, False), or
    (`fallback`, True) when none does; ValueError when neither gives a candidate."""
    from frontier.envs.registry import get_task

    t = get_task(target).info()
    matching = [s for s in sources if shares_spaces(s, target)]
    if matching:
        return matching, False
    if fallback:
        return list(fallback), True
    raise ValueError(f"closest.measure 'spaces': no source shares {target}'s spaces ({t.observation}, {t.action}); "
                     f"list sources in closest.order to fall back on")


def shares_spaces(a: str, b: str) -> bool:
    """Whether tasks a and b have the same observation and action spaces."""
    from frontier.envs.registry import get_task

    x, y = get_task(a).info(), get_task(b).info()
    return x.observation == y.observation and x.action == y.action


def source_task_map(source: str, target: str) -> dict[str, str]:
    """init_task_map for fine-tuning `source`'s single-task model on `target`: with the same
    spaces the whole policy (adapters and head too) carries over; otherwise only the trunk."""
    return {source: target} if shares_spaces(source, target) else {}


def select_closest(zero_shot_returns: dict[str, float]) -> str:
    """The candidate with the highest zero-shot return on T (ties: the earlier one)."""
    if not zero_shot_returns:
        raise ValueError("no candidate sources to choose from")
    return max(zero_shot_returns, key=lambda s: (zero_shot_returns[s], -list(zero_shot_returns).index(s)))


# -- the plan ----------------------------------------------------------------------------


def safe(task: str) -> str:
    return task.replace("/", "_")
