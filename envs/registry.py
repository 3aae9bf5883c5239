"""The task registry: built-in suites plus plugins from the `frontier.tasks` entry-point group.

    from frontier.envs.registry import all_tasks, get_task, make_expert, plugin_errors
    spec = get_task("CartPole-v1")
    source = make_expert(spec, "scripted")   # or "filtered", "rl-medium", "dataset:<path>", ...
    plugin_errors()   # {"broken_plugin": "ImportError: ..."} for plugins that failed

Discovery runs once per process (Ray workers are separate processes and discover again).
A plugin entry point names a callable returning a TaskSpec or a list of them. A plugin that
fails to load, returns something else, or reuses an existing task name is skipped whole
and recorded in `plugin_errors()`; built-in tasks always load.
"""
from __future__ import annotations

from importlib.metadata import entry_points

from frontier.envs.datasets import DatasetExpert
from frontier.envs.experts.base import ExpertSource
from frontier.envs.spec import TaskSpec

ENTRY_POINT_GROUP = "frontier.tasks"

_tasks: dict[str, TaskSpec] | None = None
_plugin_errors: dict[str, str] = {}


def builtin_tasks() -> list[TaskSpec]:
    """Tasks of the built-in suites (classic, mujoco, atari, metaworld)."""
    from frontier.envs.suites import atari, classic, metaworld, mujoco

    return classic.tasks() + mujoco.tasks() + atari.tasks() + metaworld.tasks()


def _plugin_tasks(entry_point) -> list[TaskSpec]:
    loaded = entry_point.load()()
    specs = [loaded] if isinstance(loaded, TaskSpec) else loaded
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, TaskSpec) for s in specs):
        raise TypeError(f"entry point must return a TaskSpec or a list of TaskSpecs, got {type(loaded).__name__}")
    return list(specs)


def _discover() -> tuple[dict[str, TaskSpec], dict[str, str]]:
    tasks: dict[str, TaskSpec] = {}
    for spec in builtin_tasks():
        if spec.name in tasks:
            raise ValueError(f"built-in task {spec.name!r} is defined twice")
        tasks[spec.name] = spec
    errors: dict[str, str] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            specs = _plugin_tasks(ep)
            names = [s.name for s in specs]
            clashes = sorted({n for n in names if n in tasks or names.count(n) > 1})
            if clashes:
                raise ValueError(f"task names already taken: {', '.join(clashes)}")
        except Exception as e:  # a broken plugin must not take the built-ins down with it
            errors[ep.name] = f"{type(e).__name__}: {e}"
            continue
        tasks.update((s.name, s) for s in specs)
    return tasks, errors


def all_tasks() -> dict[str, TaskSpec]:
    """Every known task by name (built-ins, then plugins), discovered once per process."""
    global _tasks, _plugin_errors
    if _tasks is None:
        _tasks, _plugin_errors = _discover()
    return _tasks


def get_task(name: str) -> TaskSpec:
    """The task called `name` (KeyError listing the known names if there is none)."""
    tasks = all_tasks()
    if name not in tasks:
        broken = "".join(f"; plugin {p!r} failed to load: {e}" for p, e in sorted(_plugin_errors.items()))
        raise KeyError(f"unknown task {name!r} (known: {', '.join(sorted(tasks))}){broken}")
    return tasks[name]


def make_expert(spec: TaskSpec, kind: str) -> ExpertSource:
    """The task's expert source of this kind (KeyError listing the kinds it has).

    `kind` "dataset:<path>" reads the dataset directory at <path> (envs.datasets), so a
    run config can seed a task from stored data: `experts.sources: {Hopper-v5: "dataset:data/hopper"}`.
    """
    if kind.startswith("dataset:"):
        return DatasetExpert(spec, kind[len("dataset:"):])
    if kind not in spec.experts:
        raise KeyError(f"task {spec.name!r} has no expert of kind {kind!r} (kinds: {', '.join(sorted(spec.experts)) or 'none'})")
    return spec.experts[kind](spec)


def plugin_errors() -> dict[str, str]:
    """Plugin entry-point name -> "ExcType: message" for plugins that failed to load."""
    all_tasks()
    return dict(_plugin_errors)


def clear_cache() -> None:
    """Forget discovered tasks so the next call discovers again (tests, new installs)."""
    global _tasks, _plugin_errors
    _tasks = None
    _plugin_errors = {}
