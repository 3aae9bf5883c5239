"""Run configuration: dataclasses with a docstring per field, YAML loading, `--set` overrides.

Every key is checked before any work starts: an unknown key or a value of the wrong type
raises `ValueError` naming the key, so the CLI can print one line and exit. Values are checked
by the dataclasses themselves (`__post_init__`), so a `RunConfig` built in code is checked too.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from frontier.agents.learner import LearnerConfig
from frontier.agents.model import ModelConfig
from frontier.distributed.replay import EVICTION_RULES, TASK_SAMPLING

RETURN_TARGETS = ("task", "data", "top", "state")


def _check_bounds(section: str, obj, positive: tuple[str, ...] = (), nonnegative: tuple[str, ...] = ()) -> None:
    """ValueError naming the key ("config key 'section.field'") of the first field out of bounds."""
    for names, ok, bound in ((positive, lambda v: v > 0, "> 0"), (nonnegative, lambda v: v >= 0, ">= 0")):
        for name in names:
            v = getattr(obj, name)
            if not ok(v):
                raise ValueError(f"config key '{section}{name}' must be {bound}, got {v}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"config key '{key}' must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class ExpertConfig:
    source: str = "scripted"
    """Default expert source kind for every task ("scripted", "filtered", ...)."""
    sources: dict[str, str] = field(default_factory=dict)
    """Per-task override of the source kind: {task name: kind}."""
    episodes: int = 20
    """Expert episodes collected per task before offline pretraining."""

    def __post_init__(self):
        _check_bounds("experts.", self, positive=("episodes",))


@dataclass
class ReplayConfig:
    capacity: int = 100_000
    """Timesteps kept per task (offline and online together)."""
    offline_share: float = 0.5
    """Share of each task's capacity reserved for expert/offline episodes (the best by return are
    kept); used by `eviction: reserve` only."""
    eviction: str = "odt"
    """Which episodes leave a full store: "odt" (ODT's buffer, the default) lets offline data fill
    the capacity, then each online episode replaces the worst offline one, and once none is left
    the oldest online one: the store becomes the policy's own experience instead of staying
    anchored to a fixed offline half; "reserve" keeps the best offline episodes within
    `offline_share` for the whole run and evicts online ones first-in first-out. On Hopper from
    medium data the two were within noise of each other (benchmarks/results/learning.md, ablation)."""
    task_weights: dict[str, float] = field(default_factory=dict)
    """Sampling weight per task (missing tasks weigh 1): batches are task-balanced by these weights
    (`task_sampling: fixed`)."""
    task_sampling: str = "fixed"
    """How batches are shared between tasks: "fixed" by `task_weights`; "val_nll" by the held-out
    action NLL, re-weighted at every validation (`train.val_every`): `task_sampling_floor` of each
    batch spread evenly, the rest by a softmax of each task's held-out NLL (its moving average over
    validations) over `task_sampling_temperature`, so the tasks the model fits worst get the most
    updates without hand-set weights (needs `holdout_share` > 0). NLLs compare between tasks of one
    action space (Meta-World's); a discrete and a continuous task's are on different scales. The
    shares are logged as `replay/<task>/share` and summary.json's `batch_share`."""
    task_sampling_floor: float = 0.5
    """`task_sampling: val_nll`: the share of each batch spread evenly over the tasks."""
    task_sampling_temperature: float = 1.0
    """`task_sampling: val_nll`: nats of held-out NLL per step that make a task's share of the
    rest e times another's. On MT10 (dev seed 0) 1.0 gave push-v3 on average 0.28 of each batch
    (the hand-set weights gave it 0.29), 2.0 gave it 0.18 (benchmarks/results/stability-notes.md)."""
    holdout_share: float = 0.1
    """Share of each task's expert episodes never trained on: the learner measures its action NLL
    and error on them every `train.val_every` updates (`val/<task>/...`), so overfitting shows as it
    happens. One in every round(1 / share) from the second episode, so a task with two or more
    holds out at least one and keeps at least one (0: none)."""

    def __post_init__(self):
        _check_bounds("replay.", self, positive=("capacity",))
        if not 0.0 <= self.holdout_share < 1.0:
            raise ValueError(f"config key 'replay.holdout_share' must be in [0, 1), got {self.holdout_share}")
        _check_choice("replay.eviction", self.eviction, EVICTION_RULES)
        if not 0.0 <= self.offline_share <= 1.0:
            raise ValueError(f"config key 'replay.offline_share' must be in [0, 1], got {self.offline_share}")
        _check_choice("replay.task_sampling", self.task_sampling, TASK_SAMPLING)
        if not 0.0 <= self.task_sampling_floor <= 1.0:
            raise ValueError(f"config key 'replay.task_sampling_floor' must be in [0, 1], got {self.task_sampling_floor}")
        if self.task_sampling_temperature <= 0:
            raise ValueError(f"config key 'replay.task_sampling_temperature' must be > 0, got {self.task_sampling_temperature}")
        if self.task_sampling == "val_nll" and self.task_weights:
            raise ValueError("config keys 'replay.task_weights' and 'replay.task_sampling: val_nll' exclude each other")
        if self.task_sampling == "val_nll" and self.holdout_share <= 0:
            raise ValueError("config key 'replay.task_sampling: val_nll' needs held-out data ('replay.holdout_share' > 0)")
        for task, w in self.task_weights.items():
            if w < 0:
                raise ValueError(f"config key 'replay.task_weights.{task}' must be >= 0, got {w}")


@dataclass
class TrainConfig:
    batch_size: int = 128
    """Windows of `model.context_len` steps per update."""
    pretrain_updates: int = 2000
    """Offline updates on expert data before any online rollout."""
    online_updates: int = 2000
    """Updates during online fine-tuning (exploration rollouts interleaved)."""
    updates_per_round: int = 100
    """Online updates per `explore_steps_per_round` env steps of exploration: the serial runner
    alternates the two; Ray runs them at once and rate-limits exploration to this ratio."""
    explore_steps_per_round: int = 250
    """Env steps of exploration per collection call (serial: per round; Ray: per actor call).
    Only whole episodes are kept; an episode in progress continues in the next call. The default,
    250 per 100 updates, keeps the store turning over slower than the model fits it; tasks limited
    by env steps rather than stability gain from more (benchmarks/results/learning.md)."""
    eval_every: int = 1000
    """Evaluate every this many learner updates (and at the end)."""
    val_every: int = 250
    """Measure the policy on the held-out expert episodes every this many updates (replay.holdout_share)."""
    select: str = "last"
    """Which policy the run ends with (the final evaluation, model.safetensors): "last", the one
    training ended with, or "val", the one whose mean held-out action NLL over tasks was the
    lowest at any measurement (offline or online; held-out data are expert episodes, so it favours
    imitating them). Chosen on held-out data, never on evaluation return."""
    eval_episodes: int = 5
    """Evaluation episodes per task at each evaluation."""
    final_eval_episodes: int = 20
    """Evaluation episodes per task at the end of the run; these give summary.json's scores."""
    return_targets: str = "top"
    """Returns-to-go the policy is conditioned on: "task" uses each task's own evaluation and
    exploration targets; "data" places them above the best return stored so far (offline data
    and online episodes), at `eval_target_scale` and `explore_target_scale` times its distance
    from the random return, capped at the task's targets (ODT's choices relative to its datasets:
    hopper-medium 3600 and 7200 over a best return of about 3200); "top" does the same above the
    mean return of the best 10% of the episodes stored NOW, so one lucky episode cannot push the
    targets out of the range the model was trained on, and the targets follow the store as
    online episodes replace offline ones. "top" is the default (benchmarks/results/learning.md,
    ablation). "state" conditions each episode on the model's return head's
    prediction for its first observation (needs `model.return_head`), for tasks whose reachable
    return depends on where an episode starts (Pendulum's swing-up from the bottom against a start
    near the top; benchmarks/results/stability-notes.md)."""
    eval_target_scale: float = 1.15
    """With data-relative return targets: the evaluation target's distance from the random
    return, as a multiple of the reference return's (1.15: ODT's 3600 over hopper-medium's best)."""
    explore_target_scale: float = 2.3
    """With data-relative return targets: the exploration target's multiple (2.3: ODT's 7200)."""
    max_wall_s: float = 0.0
    """Stop online fine-tuning after this many seconds of wall time (0: no limit)."""
    max_learner_flops: float = 0.0
    """Stop training (offline or online) once the learner has spent this many FLOPs, then run the
    final evaluation (0: no limit). A compute budget that does not depend on the machine."""
    freeze_trunk: bool = False
    """Train only the per-task modules (observation and action encoders, heads, task embedding,
    temperature); the shared transformer keeps the weights it started with (e.g. from `init_from`)."""

    def __post_init__(self):
        _check_bounds("train.", self,
                      positive=("batch_size", "updates_per_round", "explore_steps_per_round", "eval_every", "val_every",
                                "eval_episodes", "final_eval_episodes"),
                      nonnegative=("pretrain_updates", "online_updates", "max_wall_s", "max_learner_flops",
                                   "eval_target_scale", "explore_target_scale"))
        _check_choice("train.return_targets", self.return_targets, RETURN_TARGETS)
        _check_choice("train.select", self.select, ("last", "val"))


@dataclass
class RolloutConfig:
    envs_per_worker: int = 8
    """Environments stepped together (one batched policy forward per step) by each exploration worker."""
    explore_workers: int = 1
    """Rollout workers in exploration mode (Ray runs)."""
    eval_workers: int = 1
    """Rollout workers in evaluation mode (Ray runs). They split the tasks; each steps all the
    evaluation episodes of its tasks side by side."""
    weights_every: int = 50
    """The learner publishes weights every this many updates."""
    call_timeout_s: float = 900.0
    """Ray runs: seconds one call to a rollout actor (an exploration chunk, an evaluation, one
    task's expert collection) may run before the driver takes the actor to be hung, kills it and
    moves its work (Ray restarts it; its unacknowledged episodes are lost). This catches what the
    per-step deadline (`TaskSpec.step_timeout_s`) cannot: a step stuck in C code, which no Python
    signal handler interrupts. 0: no limit."""

    def __post_init__(self):
        _check_bounds("rollout.", self, positive=("envs_per_worker", "explore_workers", "eval_workers", "weights_every"),
                      nonnegative=("call_timeout_s",))


@dataclass
class RunConfig:
    tasks: list[str] = field(default_factory=lambda: ["CartPole-v1"])
    """Task names (see `frontier tasks`)."""
    seed: int = 0
    """Seed of everything: model init, sampling, environment seeds."""
    experts: ExpertConfig = field(default_factory=ExpertConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    checkpoint_every: int = 1000
    """Write a checkpoint every this many learner updates (and at the end)."""
    summary_every_s: float = 10.0
    """Rewrite summary.json at least this often (seconds)."""
    init_from: str = ""
    """Run directory whose final model.safetensors initializes this model ("": random init): the
    shared trunk, and the per-task modules of tasks both runs have (matched by name, not position)."""
    init_task_map: dict[str, str] = field(default_factory=dict)
    """Use the `init_from` run's per-task modules of task A for this run's task B: {A: B}. Lets a
    model of one task start another task with the same observation and action spaces."""

    def __post_init__(self):
        """Checks across sections; each section checks its own values. Task names are checked
        against the registry by the caller."""
        if not self.tasks:
            raise ValueError("config key 'tasks' must name at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"config key 'tasks' lists a task twice: {self.tasks}")
        _check_bounds("", self, positive=("checkpoint_every",))
        for task in self.replay.task_weights:
            if task not in self.tasks:
                raise ValueError(f"config key 'replay.task_weights.{task}': task not in 'tasks'")
        for task in self.experts.sources:
            if task not in self.tasks:
                raise ValueError(f"config key 'experts.sources.{task}': task not in 'tasks'")
        if self.train.select == "val" and not self.replay.holdout_share:
            raise ValueError("config key 'train.select': 'val' needs held-out data ('replay.holdout_share' > 0)")
        if self.train.return_targets == "state" and not self.model.return_head:
            raise ValueError("config key 'train.return_targets': 'state' needs 'model.return_head: true'")
        if self.init_task_map and not self.init_from:
            raise ValueError("config key 'init_task_map' needs 'init_from'")
        for old, new in self.init_task_map.items():
            if new not in self.tasks:
                raise ValueError(f"config key 'init_task_map.{old}': {new!r} is not in 'tasks'")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting ints to floats; raise ValueError naming `key`."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"config key '{key}' must be a mapping, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (list, tuple):
        (item_tp, *_) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"config key '{key}' must be a list, got {value!r}")
        return [_convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ValueError(f"config key '{key}' must be a mapping, got {value!r}")
        return {_convert(k, k_tp, key): _convert(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ValueError:
                pass
        raise ValueError(f"config key '{key}' has invalid value {value!r} (expected {tp})")
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config annotation {tp} for '{key}'")
    name = getattr(tp, "__name__", str(tp))
    raise ValueError(f"config key '{key}' must be {name}, got {value!r}")


def _build(cls: type, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f"did you mean '{prefix}{close[0]}'? " if close else ""
            raise ValueError(f"unknown config key '{prefix}{k}' ({hint}valid: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if str(e).startswith("config key"):  # the dataclass named the key itself
            raise ValueError(str(e)) from None
        raise ValueError(f"invalid config section '{prefix.rstrip('.') or 'root'}': {e}") from None


def _set_path(data: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"config key '{dotted}': '{p}' is not a section")
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'train.batch_size=64' -> ('train.batch_size', 64); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} must look like key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ValueError(f"override {text!r}: value is not valid YAML") from None
    return key.strip(), value


def to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict, overrides: list[str] = ()) -> RunConfig:
    """A checked RunConfig from a mapping and `key=value` overrides; `data` is left as it was."""
    data = copy.deepcopy(data)
    for text in overrides:
        key, value = parse_override(text)
        _set_path(data, key, value)
    return _build(RunConfig, data)


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """The mapping a YAML file holds; ValueError naming `what` and the file if it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{what} {where}: not valid YAML: {problem}") from None
    if data is None:  # an empty file would otherwise mean "every default", silently
        raise ValueError(f"{what} {path} is empty (write {{}} to mean every default)")
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a mapping at the top level")
    return data


def load(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML config, apply `key=value` overrides, check every key and value."""
    return from_dict(read_yaml_mapping(path), overrides)


def save(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
