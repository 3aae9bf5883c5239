"""The built wheel: every module and the expert zoo under the one name frontier, installable and
importable in one environment beside Dask's `distributed` (the name frontier's runtime folder has)."""
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The source folders: every top-level folder that is a package (frontier, agents, envs, ..., cli).
FOLDERS = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())

CHECK = r"""
import json, sys
from pathlib import Path
import distributed                                   # Dask's
import frontier, frontier.cli, frontier.distributed.config, frontier.distributed.replay
from frontier.envs.experts.rl import ZOO_DIR, zoo_cards
print(json.dumps({
    "dask_client": hasattr(distributed, "Client"), "distributed": distributed.__file__,
    "frontier": frontier.__file__, "version": frontier.__version__,
    "runtime": frontier.distributed.config.__file__, "cli": frontier.cli.__file__,
    "same_module": sys.modules["distributed"] is sys.modules["frontier.distributed"],
    "zoo_dir": str(ZOO_DIR), "zoo_cards": len(zoo_cards()),
}))
"""


def _wheel_name(path: Path) -> str:
    """agents/model.py -> frontier/agents/model.py; frontier/__init__.py stays."""
    rel = path.relative_to(ROOT)
    return rel.as_posix() if rel.parts[0] == "frontier" else f"frontier/{rel.as_posix()}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built with no network from a copy of the sources (setuptools' build/ and a stale
    build/lib of a checkout stay out of it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--disable-pip-version-check", "--quiet", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (found,) = out.glob("frontier_rl-*.whl")
    return found


def test_wheel_holds_every_module_and_the_zoo_under_frontier(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = [p for f in FOLDERS for p in sorted((ROOT / f).rglob("*.py")) if "__pycache__" not in p.parts]
    zoo = [p for p in sorted((ROOT / "envs" / "zoo").rglob("*")) if p.is_file()]
    assert sources and zoo
    missing = [_wheel_name(p) for p in sources + zoo if _wheel_name(p) not in names]
    assert missing == [], "not in the wheel (a package missing from pyproject's package list?)"
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"frontier"}  # nothing installs as agents, envs, distributed, ...
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "frontier = frontier.cli:main" in text and "[console_scripts]" in text


def test_wheel_installs_beside_dasks_distributed(wheel, tmp_path):
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                           "--disable-pip-version-check", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Dask's distributed comes from this environment (the dev extra); frontier from the wheel, ahead of the
    # editable install. The working directory is not the checkout, whose distributed/ folder would shadow Dask's.
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, ("Dask's distributed must be installed (pip install -e '.[dev]')\n"
                                  + proc.stderr[-3000:])
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["dask_client"] and not got["same_module"]
    assert Path(got["distributed"]).parent.parent.name == "site-packages"  # neither the wheel's nor the folder
    for key in ("frontier", "runtime", "cli", "zoo_dir"):
        assert Path(got[key]).is_relative_to(target), (key, got[key])
    assert Path(got["runtime"]) == target / "frontier" / "distributed" / "config.py"
    assert got["zoo_cards"] > 0  # the expert zoo's data came with the wheel
