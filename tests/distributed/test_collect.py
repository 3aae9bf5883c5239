"""`frontier collect`: datasets from expert sources, copies, Minari import/export, bad input."""
import json

import numpy as np
import pytest

from frontier.cli import main
from frontier.distributed import config
from frontier.distributed.replay import ReplayStore, read_shards
from frontier.distributed.rollout import collect_expert
from frontier.envs.datasets import DatasetExpert, load_dataset
from frontier.envs.registry import get_task, make_expert


@pytest.fixture(autouse=True)
def _no_user_minari(tmp_path, monkeypatch):
    """Minari's default root is the user's: tests use their own."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))


def collect(*args: str) -> int:
    return main(["collect", *args])


@pytest.fixture
def cartpole(tmp_path, capsys):
    out = tmp_path / "cp"
    assert collect("CartPole-v1", "--source", "scripted", "--episodes", "3", "--seed", "7", "--out", str(out)) == 0
    (tmp_path / "stdout.txt").write_text(capsys.readouterr().out)
    return out


def test_collect_scripted(cartpole):
    line = (cartpole.parent / "stdout.txt").read_text().strip()
    assert line.startswith("3 episodes of CartPole-v1 (scripted)") and "CPU-s" in line and "\n" not in line
    info, eps = load_dataset(cartpole)
    assert info["task"] == "CartPole-v1" and info["source"]["kind"] == "scripted" and info["seed"] == 7
    # A scripted expert wastes no attempts: it cost exactly the steps it stored.
    assert info["cost"]["env_steps"] == info["steps"] == sum(e.length for e in eps)
    assert info["cost"]["cpu_s"] > 0 and info["cost"]["gpu_s"] == 0.0
    assert [e.source["seed"] for e in eps] == [7, 8, 9] and {e.source["kind"] for e in eps} == {"scripted"}
    # Read back through the expert source: the same episodes the expert produces directly.
    direct = list(make_expert(get_task("CartPole-v1"), "scripted").episodes(3, 7))
    stored = list(DatasetExpert(get_task("CartPole-v1"), cartpole).episodes(3, 0))
    for i, (a, b) in enumerate(zip(direct, stored)):
        assert np.array_equal(a.observations, b.observations) and np.array_equal(a.actions, b.actions)
        assert np.array_equal(a.rewards, b.rewards) and a.terminated == b.terminated
        assert b.source == {**a.source, "dataset": "cp", "dataset_index": i}


def test_collect_filtered_charges_discarded_attempts(tmp_path):
    out = tmp_path / "pf"
    assert collect("Pendulum-v1", "--source", "filtered", "--episodes", "2", "--out", str(out)) == 0
    info, eps = load_dataset(out)
    assert info["source"] == {"kind": "filtered", "policies": ["uniform-random-top0.1-of-20"]}
    assert {e.source["kind"] for e in eps} == {"filtered"}
    # Top 2 of a pool of 20 attempts of 200 steps: all 4000 steps are charged, 400 are stored.
    assert info["steps"] == 400 and info["cost"]["env_steps"] == 4000


def test_copy_from_dataset_keeps_origin_cost(cartpole, tmp_path):
    out = tmp_path / "copy"
    assert collect("CartPole-v1", "--source", "dataset", "--dataset", str(cartpole), "--episodes", "2",
                   "--seed", "2", "--out", str(out)) == 0
    info, eps = load_dataset(out)
    original = json.loads((cartpole / "dataset.json").read_text())
    assert info["cost"]["env_steps"] == 0 and info["derived_from"]["cost"] == original["cost"]
    assert [e.source["seed"] for e in eps] == [9, 7]  # indices 2, 0 of the original


def test_minari_export_then_import_via_cli(cartpole, tmp_path):
    out = tmp_path / "again"
    # Exporting needs --out too: a copy of the source dataset is written alongside.
    assert collect("CartPole-v1", "--source", "dataset", "--dataset", str(cartpole), "--episodes", "3",
                   "--out", str(tmp_path / "copy"), "--export-minari", "frontier/cartpole-v0") == 0
    assert (tmp_path / "minari" / "frontier" / "cartpole-v0" / "data" / "metadata.json").is_file()
    assert collect("CartPole-v1", "--source", "minari", "--minari-id", "frontier/cartpole-v0", "--out", str(out)) == 0
    (_, a), (info, b) = load_dataset(tmp_path / "copy"), load_dataset(out)
    assert info["minari"]["dataset_id"] == "frontier/cartpole-v0"
    for x, y in zip(a, b):
        assert np.array_equal(x.observations, y.observations) and np.array_equal(x.actions, y.actions)
        assert np.array_equal(x.rewards, y.rewards) and x.terminated == y.terminated and x.source == y.source


def test_run_seeded_from_dataset(cartpole, tmp_path):
    """What both runners do with `experts.sources: {task: "dataset:<path>"}`: collect_expert, then the replay store."""
    kind = f"dataset:{cartpole}"
    cfg = config.from_dict({"tasks": ["CartPole-v1"], "experts": {"episodes": 3, "sources": {"CartPole-v1": kind}}})
    eps, counts = collect_expert("CartPole-v1", cfg.experts.sources["CartPole-v1"], cfg.experts.episodes, seed=0)
    assert counts["env_steps"] == 0 and [e.source["dataset_index"] for e in eps] == [0, 1, 2]
    replay = ReplayStore([get_task("CartPole-v1").info()], 10_000, 1.0, 4, {}, tmp_path / "replay", seed=0)
    assert replay.add(eps, offline=True) == 3
    assert replay.sample(8).size == 8
    stored = [ep for _, shard, _ in read_shards(tmp_path / "replay") for ep in shard]
    assert [ep.source for ep in stored] == [ep.source for ep in eps]


@pytest.mark.parametrize("argv, message", [
    (["Nope-v0", "--source", "scripted", "--episodes", "1"], "unknown task 'Nope-v0'"),
    (["CartPole-v1", "--source", "rl", "--episodes", "1"], "task 'CartPole-v1' has no expert of kind 'rl'"),
    (["CartPole-v1", "--source", "scripted", "--episodes", "0"], "--episodes must be > 0, got 0"),
    (["CartPole-v1", "--source", "scripted"], "--source scripted needs --episodes N"),
    (["CartPole-v1", "--source", "dataset", "--episodes", "1"], "--source dataset needs --dataset PATH"),
    (["CartPole-v1", "--source", "dataset", "--dataset", "/nonexistent/ds", "--episodes", "1"],
     "dataset directory /nonexistent/ds does not exist"),
    (["CartPole-v1", "--source", "minari", "--minari-id", "nobody/nothing-v0"], "no Minari dataset at"),
    (["CartPole-v1", "--source", "scripted", "--episodes", "1", "--export-minari", "no-version"],
     "malformed Minari dataset id 'no-version'"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert collect(*argv, "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists() and not (tmp_path / "minari").exists()


def test_existing_output_and_wrong_task_dataset(cartpole, tmp_path, capsys):
    before = sorted(p.name for p in cartpole.iterdir())
    assert collect("CartPole-v1", "--source", "scripted", "--episodes", "1", "--out", str(cartpole)) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in cartpole.iterdir()) == before
    out = tmp_path / "x"
    assert collect("Pendulum-v1", "--source", "dataset", "--dataset", str(cartpole), "--episodes", "1",
                   "--out", str(out)) == 2
    assert f"dataset {cartpole} holds task 'CartPole-v1', not 'Pendulum-v1'" in capsys.readouterr().err
    assert not out.exists()


def test_corrupt_dataset_file_fails_cleanly(cartpole, tmp_path, capsys):
    f = cartpole / "episodes-00000.npz"
    f.write_bytes(f.read_bytes()[:500])
    out = tmp_path / "x"
    assert collect("CartPole-v1", "--source", "dataset", "--dataset", str(cartpole), "--episodes", "1",
                   "--out", str(out)) == 2
    assert f"episode file {f} is corrupt" in capsys.readouterr().err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
