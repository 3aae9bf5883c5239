"""The task registry: built-in suites plus plugins from the `frontier.tasks` entry-point group.

    from frontier.envs.registry import all_tasks, get_task, make_expert, plugin_errors
    spec = get_task("CartPole-v1")
    source = make_expert(spec, "scripted")   # or "filtered", "rl-medium", "dataset:<path>", ...
    plugin_errors()   # {"broken_plugin": "ImportError: ..."} for plugins that failed

Discovery runs once per process (Ray workers are separate processes and discover again).
A plugin entry point names a callable returning a TaskSpec or a list of them. A plugin that
fails to load, returns something else, or reuses an existing task name is skipped whole
and recorded in `plugin_errors()`; built-in tasks always load. A plugin that imports frontier
by the top-level names its packages had before they moved under `frontier.` (`from envs.spec
import TaskSpec`) is told in its error what to write instead.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import linecache
from importlib.metadata import entry_points

from frontier.envs.datasets import DatasetExpert
from frontier.envs.experts.base import ExpertSource
from frontier.envs.spec import TaskSpec

ENTRY_POINT_GROUP = "frontier.tasks"
# Top-level names frontier's packages were installed under before they moved under frontier.
OLD_NAMES = ("agents", "envs", "distributed", "benchmarks")

_tasks: dict[str, TaskSpec] | None = None
_plugin_errors: dict[str, str] = {}


def builtin_tasks() -> list[TaskSpec]:
    """Tasks of the built-in suites (classic, mujoco, atari, metaworld)."""
    from frontier.envs.suites import atari, classic, metaworld, mujoco

    return classic.tasks() + mujoco.tasks() + atari.tasks() + metaworld.tasks()


def _old_name_message(plugin: str, module: str, names: list[str]) -> str | None:
    """The one line for a plugin that imports `module` (e.g. 'envs.spec') by frontier's old
    names; None where frontier has no such module (the name is some other package's)."""
    if module.split(".")[0] not in OLD_NAMES:
        return None
    try:
        if importlib.util.find_spec(f"frontier.{module}") is None:
            return None
        if names and not all(hasattr(importlib.import_module(f"frontier.{module}"), n)
                             or importlib.util.find_spec(f"frontier.{module}.{n}") for n in names):
            return None
    except (ImportError, ValueError):
        return None
    new = f"from frontier.{module} import {', '.join(names)}" if names else f"import frontier.{module}"
    return f"plugin {plugin!r} imports {module!r}: frontier's modules are now under 'frontier.' (write {new!r})"


def _failed_import(e: ImportError) -> tuple[str, list[str]]:
    """(module, names) of the import statement that raised `e`: the innermost frame of the
    traceback is the plugin's own line; (e.name, []) where its source cannot be read."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        path, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        try:
            tree = ast.parse("".join(linecache.getlines(path)))
        except (SyntaxError, ValueError):
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or not node.lineno <= line <= node.end_lineno:
                continue
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                return node.module, [a.name for a in node.names]
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == (e.name or "").split(".")[0]:
                        return alias.name, []
    return e.name or "", []


def _plugin_tasks(entry_point) -> list[TaskSpec]:
    loaded = entry_point.load()()
    specs = [loaded] if isinstance(loaded, TaskSpec) else loaded
    if not isinstance(specs, (list, tuple)) or not all(isinstance(s, TaskSpec) for s in specs):
        # A TaskSpec of the folder imported by its old name (the repository root on sys.path):
        # another class of the same name, which frontier cannot use.
        for s in specs if isinstance(specs, (list, tuple)) else [loaded]:
            cls = type(s)
            message = _old_name_message(entry_point.name, cls.__module__, [cls.__name__])
            if message:
                raise ImportError(message)
        raise TypeError(f"entry point must return a TaskSpec or a list of TaskSpecs, got {type(loaded).__name__}")
    return list(specs)


def _plugin_error(plugin: str, e: Exception) -> str:
    """"ExcType: message" of a plugin that failed to load."""
    if isinstance(e, ImportError) and (e.name or "").split(".")[0] in OLD_NAMES:
        message = _old_name_message(plugin, *_failed_import(e))
        if message:
            return f"{type(e).__name__}: {message}"
    return f"{type(e).__name__}: {e}"


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
            errors[ep.name] = _plugin_error(ep.name, e)
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
    """The task called `name` (KeyError naming the closest known names if there is none)."""
    tasks = all_tasks()
    if name not in tasks:
        close = difflib.get_close_matches(name, tasks, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        broken = "".join(f"; plugin {p!r} failed to load: {e}" for p, e in sorted(_plugin_errors.items()))
        raise KeyError(f"unknown task {name!r} ({hint}`frontier tasks` lists all {len(tasks)}){broken}")
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
