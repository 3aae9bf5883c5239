import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from frontier.envs import registry
from frontier.envs.spec import TaskSpec

ROOT = Path(__file__).resolve().parents[2]

BUILTIN = [
    "CartPole-v1", "Pendulum-v1", "Acrobot-v1",
    "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5",
    "Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5",
    "ALE/Pong-ram-v5", "ALE/Pong-v5", "ALE/Breakout-ram-v5", "ALE/Breakout-v5",
]  # fmt: skip


@pytest.fixture
def fresh_registry():
    registry.clear_cache()
    yield
    registry.clear_cache()


def test_builtins_registered_and_looked_up():
    tasks = registry.all_tasks()
    for name in BUILTIN:
        assert name in tasks
        spec = registry.get_task(name)
        assert isinstance(spec, TaskSpec) and spec.name == name
    assert registry.all_tasks() is tasks  # discovered once, cached


def test_unknown_task_names_the_closest_in_one_short_line():
    with pytest.raises(KeyError, match=r"unknown task 'Cartpole-v1' \(did you mean 'CartPole-v1'\? `frontier tasks` lists all \d+\)") as e:
        registry.get_task("Cartpole-v1")
    assert len(str(e.value)) < 200  # not every known name
    with pytest.raises(KeyError, match=r"unknown task 'NoSuchTask-v0' \(`frontier tasks` lists all"):
        registry.get_task("NoSuchTask-v0")


def test_example_plugin_discovered(fresh_registry):
    if not any(ep.name == "point_reach" for ep in entry_points(group=registry.ENTRY_POINT_GROUP)):
        pytest.skip("example plugin not installed: pip install -e examples/frontier-plugin-example")
    assert "PointReach-v0" in registry.all_tasks()
    assert "point_reach" not in registry.plugin_errors()
    spec = registry.get_task("PointReach-v0")
    assert spec.suite == "point" and "scripted" in spec.experts


def _fake_distribution(root, dist: str, module: str, source: str, entry: str):
    """An installed-looking distribution on sys.path with one frontier.tasks entry point."""
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[frontier.tasks]\n{entry} = {module}:tasks\n")
    (root / f"{module}.py").write_text(source)


def test_broken_plugins_reported_builtins_still_load(tmp_path, monkeypatch, fresh_registry):
    _fake_distribution(tmp_path, "broken_pkg", "broken_pkg_mod", "raise RuntimeError('boom at import')\n", "broken_plugin")
    _fake_distribution(
        tmp_path, "clash_pkg", "clash_pkg_mod",
        "from frontier.envs.spec import TaskSpec\n"
        "def tasks():\n    return [TaskSpec(name='CartPole-v1', env='CartPole-v1', suite='x', max_episode_steps=10)]\n",
        "clashing_plugin",
    )  # fmt: skip
    _fake_distribution(tmp_path, "junk_pkg", "junk_pkg_mod", "def tasks():\n    return 42\n", "junk_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    tasks = registry.all_tasks()
    errors = registry.plugin_errors()
    assert errors["broken_plugin"] == "RuntimeError: boom at import"
    assert errors["clashing_plugin"].startswith("ValueError") and "CartPole-v1" in errors["clashing_plugin"]
    assert errors["junk_plugin"].startswith("TypeError")
    for name in BUILTIN:
        assert name in tasks
    assert tasks["CartPole-v1"].suite == "classic"  # the clash did not replace the built-in
    with pytest.raises(KeyError, match="plugin 'broken_plugin' failed to load: RuntimeError: boom at import"):
        registry.get_task("PluginTask-v0")  # a user asking for a broken plugin's task learns why
    monkeypatch.delitem(sys.modules, "clash_pkg_mod", raising=False)
    monkeypatch.delitem(sys.modules, "junk_pkg_mod", raising=False)


@pytest.fixture
def plugin_path(monkeypatch, tmp_path):
    """sys.path as an installed frontier sees it (without the repository root, whose folders would
    import by their bare names), with tmp_path first for fake distributions; modules imported
    under frontier's old names are forgotten afterwards."""
    monkeypatch.setattr(sys, "path", [str(tmp_path), *(p for p in sys.path if Path(p or ".").resolve() != ROOT)])
    old = lambda: {m for m in sys.modules if m.split(".")[0] in registry.OLD_NAMES}  # noqa: E731
    for name in old():
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    yield tmp_path
    for name in old() | {"old_pkg_mod"}:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


OLD_PATH = "plugin 'old_plugin' imports '{}': frontier's modules are now under 'frontier.' (write '{}')"


@pytest.mark.parametrize("source, module, write", [
    ("from envs.spec import TaskSpec\n", "envs.spec", "from frontier.envs.spec import TaskSpec"),
    ("from envs.experts import (\n    PolicyExpert,\n    filtered,\n)\n", "envs.experts",
     "from frontier.envs.experts import PolicyExpert, filtered"),
    ("import agents.model\n", "agents.model", "import frontier.agents.model"),
    ("from distributed.replay import ReplayStore\n", "distributed.replay",
     "from frontier.distributed.replay import ReplayStore"),
])  # fmt: skip
def test_plugin_on_the_old_import_path_is_told_what_to_write(plugin_path, fresh_registry, source, module, write):
    _fake_distribution(plugin_path, "old_pkg", "old_pkg_mod", "import os\n" + source + "def tasks():\n    return []\n",
                       "old_plugin")
    tasks = registry.all_tasks()
    assert registry.plugin_errors()["old_plugin"] == "ModuleNotFoundError: " + OLD_PATH.format(module, write)
    assert "CartPole-v1" in tasks  # the built-ins still load
    with pytest.raises(KeyError, match="plugin 'old_plugin' failed to load: ModuleNotFoundError: plugin 'old_plugin' "
                                       "imports"):
        registry.get_task("PointMass-v0")


def test_old_import_path_resolved_from_the_repository_root_gets_the_same_line(plugin_path, monkeypatch,
                                                                             fresh_registry):
    """Run from a checkout, the repository root on sys.path: `envs` imports as the bare folder and its
    TaskSpec is another class than frontier's."""
    monkeypatch.setattr(sys, "path", [*sys.path, str(ROOT)])
    _fake_distribution(plugin_path, "old_pkg", "old_pkg_mod",
                       "from envs.spec import TaskSpec\n"
                       "def tasks():\n"
                       "    return [TaskSpec(name='Old-v0', env='CartPole-v1', suite='x', max_episode_steps=10)]\n",
                       "old_plugin")  # fmt: skip
    registry.all_tasks()
    assert registry.plugin_errors()["old_plugin"] == "ImportError: " + OLD_PATH.format(
        "envs.spec", "from frontier.envs.spec import TaskSpec")


def test_other_packages_missing_modules_are_reported_as_they_are(plugin_path, fresh_registry):
    """Only frontier's own modules get the hint: a plugin missing a name that is not frontier's keeps
    Python's message."""
    _fake_distribution(plugin_path, "old_pkg", "old_pkg_mod", "from distributed import no_such_name\ndef tasks():\n"
                       "    return []\n", "old_plugin")
    registry.all_tasks()
    error = registry.plugin_errors()["old_plugin"]
    assert error.startswith(("ModuleNotFoundError: No module named 'distributed'", "ImportError: cannot import name"))
