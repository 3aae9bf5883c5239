"""Dataset directories, the "dataset" expert source, Minari export and import."""
import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest

from frontier.agents.trajectory import Episode
from frontier.envs.datasets import (
    DatasetExpert,
    DatasetWriter,
    export_minari,
    import_minari,
    load_dataset,
    read_dataset_info,
    write_dataset,
)
from frontier.envs.registry import get_task, make_expert

COST = {"env_steps": 1234, "cpu_s": 0.5, "gpu_s": 0.0}


def expert_episodes(task: str, kind: str, n: int, seed: int = 0) -> list[Episode]:
    return list(make_expert(get_task(task), kind).episodes(n, seed))


@pytest.fixture(scope="module")
def cartpole_eps():
    return expert_episodes("CartPole-v1", "scripted", 5)


@pytest.fixture(scope="module")
def pendulum_eps():
    return expert_episodes("Pendulum-v1", "scripted", 2)


def assert_same(a: list[Episode], b: list[Episode], source: bool = True) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.task == y.task
        assert x.observations.dtype == y.observations.dtype and np.array_equal(x.observations, y.observations)
        assert x.actions.dtype == y.actions.dtype and np.array_equal(x.actions, y.actions)
        assert x.rewards.dtype == y.rewards.dtype and np.array_equal(x.rewards, y.rewards)
        assert x.terminated == y.terminated
        if source:
            assert x.source == y.source


def test_write_then_read_back(tmp_path, cartpole_eps):
    record = write_dataset(tmp_path / "cp", "CartPole-v1", "scripted", cartpole_eps, COST)
    info, eps = load_dataset(tmp_path / "cp")
    assert info == record == json.loads((tmp_path / "cp" / "dataset.json").read_text())
    assert info["task"] == "CartPole-v1" and info["episodes"] == 5 and info["cost"] == COST
    assert info["steps"] == sum(e.length for e in cartpole_eps)
    assert info["source"] == {"kind": "scripted", "policies": [cartpole_eps[0].source["policy"]]}
    assert_same(eps, cartpole_eps)
    assert [e.source["seed"] for e in eps] == [0, 1, 2, 3, 4]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary directory left behind"


def test_dataset_expert_order_files_and_cost(tmp_path, cartpole_eps):
    with DatasetWriter(tmp_path / "cp", "CartPole-v1", "scripted", episodes_per_file=2) as w:
        for ep in cartpole_eps:
            w.add(ep)
        w.finish(COST)
    assert sorted(p.name for p in (tmp_path / "cp").glob("*.npz")) == [
        "episodes-00000.npz", "episodes-00001.npz", "episodes-00002.npz"]
    spec = get_task("CartPole-v1")
    expert = make_expert(spec, f"dataset:{tmp_path / 'cp'}")
    assert isinstance(expert, DatasetExpert) and expert.kind == "dataset" and expert.policy_id == "cp"
    assert expert.production_cost == COST
    got = list(expert.episodes(4, seed=13))  # starts at 13 % 5 = 3, wraps around, crosses files
    assert [e.source["dataset_index"] for e in got] == [3, 4, 0, 1]
    assert_same(got, [cartpole_eps[i] for i in (3, 4, 0, 1)], source=False)
    for e, i in zip(got, (3, 4, 0, 1)):
        assert e.source == {**cartpole_eps[i].source, "dataset": "cp", "dataset_index": i}
    assert expert.env_steps == 0
    with pytest.raises(ValueError, match="holds 5 episodes, 6 were asked for"):
        list(expert.episodes(6, 0))


def test_incomplete_writer_leaves_nothing(tmp_path, cartpole_eps):
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "cp", "CartPole-v1", "scripted", episodes_per_file=1) as w:
            w.add(cartpole_eps[0])
            w.add(cartpole_eps[1])
            raise RuntimeError("collection failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="task 'Pendulum-v1' added to a dataset of task 'CartPole-v1'"):
        with DatasetWriter(tmp_path / "cp", "CartPole-v1", "scripted") as w:
            w.add(expert_episodes("Pendulum-v1", "scripted", 1)[0])


@pytest.fixture
def dataset(tmp_path, cartpole_eps):
    write_dataset(tmp_path / "cp", "CartPole-v1", "scripted", cartpole_eps, COST)
    return tmp_path / "cp"


def test_corrupt_episode_file_is_named(dataset):
    f = dataset / "episodes-00000.npz"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    expert = DatasetExpert(get_task("CartPole-v1"), dataset)  # dataset.json itself is fine
    with pytest.raises(ValueError, match=f"episode file {f} is corrupt"):
        list(expert.episodes(1, 0))


def test_truncated_episode_file_is_named(dataset):
    f = dataset / "episodes-00000.npz"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(ValueError, match=str(f)):
        load_dataset(dataset)


def test_truncated_file_with_matching_checksum_is_named(dataset):
    # Checksums rewritten to match: the episode reader itself must still name the file.
    f = dataset / "episodes-00000.npz"
    f.write_bytes(f.read_bytes()[:1000])
    meta = json.loads((dataset / "dataset.json").read_text())
    meta["files"][0]["sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    (dataset / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"episode file {f} is unreadable"):
        load_dataset(dataset)


def test_corrupt_or_missing_dataset_json_is_named(dataset):
    meta = dataset / "dataset.json"
    meta.write_text(meta.read_text()[:50])
    with pytest.raises(ValueError, match=f"{meta} is unreadable"):
        read_dataset_info(dataset)
    meta.unlink()
    with pytest.raises(ValueError, match=f"{meta} is missing"):
        DatasetExpert(get_task("CartPole-v1"), dataset)
    with pytest.raises(ValueError, match="does not exist"):
        make_expert(get_task("CartPole-v1"), f"dataset:{dataset}-nope")


def test_missing_episode_file_is_named(dataset):
    (dataset / "episodes-00000.npz").unlink()
    with pytest.raises(ValueError, match="episodes-00000.npz listed in .* is missing"):
        read_dataset_info(dataset)


def test_task_mismatch_names_both(dataset):
    with pytest.raises(ValueError, match=f"dataset {dataset} holds task 'CartPole-v1', not 'Pendulum-v1'"):
        DatasetExpert(get_task("Pendulum-v1"), dataset)


@pytest.mark.parametrize("task, fixture", [("CartPole-v1", "cartpole_eps"), ("Pendulum-v1", "pendulum_eps")])
def test_minari_round_trip(tmp_path, task, fixture, request):
    eps = request.getfixturevalue(fixture)
    # Mixed provenance survives per episode.
    eps = [Episode(e.task, e.observations, e.actions, e.rewards, e.terminated, {**e.source, "note": i})
           for i, e in enumerate(eps)]
    record = write_dataset(tmp_path / "ours", task, "scripted", eps, COST)
    root = tmp_path / "minari"
    path = export_minari(tmp_path / "ours", root, "frontier/test-v0", get_task(task))
    assert path == root / "frontier" / "test-v0"
    import minari

    ds = minari.MinariDataset(path / "data")
    assert ds.total_episodes == len(eps) and ds.total_steps == record["steps"]
    assert json.loads(ds.storage.metadata["frontier_dataset"])["cost"] == COST
    back = import_minari(root, "frontier/test-v0", tmp_path / "back", get_task(task))
    assert back["cost"] == COST and back["source"]["kind"] == "minari"
    _, got = load_dataset(tmp_path / "back")
    assert_same(got, eps)
    with pytest.raises(ValueError, match="already exists"):
        export_minari(tmp_path / "ours", root, "frontier/test-v0", get_task(task))


@pytest.mark.parametrize("data_format", ["arrow", "hdf5"])
def test_import_foreign_minari_dataset(tmp_path, monkeypatch, data_format):
    """A Minari dataset recorded on the raw env (actions in [-2, 2]) becomes agent units, from
    either of Minari's storage formats."""
    import minari
    from minari.data_collector import EpisodeBuffer

    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    buffers, raw = [], []
    for i in range(2):
        obs, _ = env.reset(seed=i)
        o, a, r = [obs], [], []
        for t in range(30):
            act = rng.uniform(-2, 2, size=1).astype(np.float32)
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs), a.append(act), r.append(rew)
        ends = np.zeros(30, bool)
        ends[-1] = True
        buffers.append(EpisodeBuffer(id=i, seed=i, observations=np.array(o), actions=np.array(a), rewards=r,
                                     terminations=np.zeros(30, bool), truncations=ends))
        raw.append((np.array(o), np.array(a), np.array(r)))
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    minari.create_dataset_from_buffers("someone/pendulum-v1", buffers, env=env, eval_env=env, data_format=data_format,
                                       algorithm_name="uniform", description="random torques", author="someone",
                                       author_email="x", code_permalink="x")
    monkeypatch.delenv("MINARI_DATASETS_PATH")
    record = import_minari(root / "someone" / "pendulum-v1", None, tmp_path / "imp", get_task("Pendulum-v1"))
    assert record["cost_lower_bound"] and record["cost"]["env_steps"] == 60
    _, eps = load_dataset(tmp_path / "imp")
    for i, (ep, (o, a, r)) in enumerate(zip(eps, raw)):
        assert ep.observations.dtype == np.float32 and ep.observations.shape == (30, 3)
        np.testing.assert_allclose(ep.observations, o[:-1].astype(np.float32))
        np.testing.assert_allclose(ep.actions, (a / 2.0).astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(ep.rewards, r.astype(np.float32))
        assert not ep.terminated
        assert ep.source == {"kind": "dataset", "policy": "minari:someone/pendulum-v1", "seed": i, "minari_episode": i}
    with pytest.raises(ValueError, match="action space"):
        import_minari(root / "someone" / "pendulum-v1", None, tmp_path / "bad", get_task("CartPole-v1"))
    assert not (tmp_path / "bad").exists()
