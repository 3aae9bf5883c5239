"""Smoke tests of the learner and replay benchmarks (quick mode, tiny sizes) and unit tests of the
code paths they measure: per-phase update timings, the fused optimizer, the ODT reference step."""
import json
import math

import numpy as np
import pytest
import torch

from frontier.agents.learner import Learner, LearnerConfig
from frontier.agents.model import ModelConfig
from frontier.agents.spaces import Box, TaskInfo
from frontier.benchmarks import learner as learner_bench
from frontier.benchmarks import odt_reference as odt
from frontier.benchmarks import replay as replay_bench


@pytest.fixture(autouse=True)
def one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


def _finite_positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_learner_benchmark_quick(tmp_path):
    learner_bench.run(quick=True, out=tmp_path)
    data = json.loads((tmp_path / "learner.json").read_text())
    assert (tmp_path / "learner.md").read_text().count("MET") >= 1
    assert (tmp_path / "learner.png").stat().st_size > 0
    assert data["machine"]["cores"] >= 1 and data["threads"] == 1
    (s,) = data["settings"]
    for name in ("reference", "frontier", "frontier (before)"):
        assert _finite_positive(s["timesteps_per_s"][name]), name
        assert s["timesteps_per_s"][name] == pytest.approx(s["batch_size"] * s["context_len"] / s["update_s"][name])
    for phase in ("sampling", "forward", "backward", "optimizer"):
        assert _finite_positive(s["frontier_breakdown_s"][phase]), phase
    assert _finite_positive(s["ratio"]) and _finite_positive(s["serial_ratio"])
    assert _finite_positive(s["reference_batch_s"])
    assert s["ratio"] == pytest.approx(s["timesteps_per_s"]["frontier"] / s["timesteps_per_s"]["reference"])


def test_replay_benchmark_quick(tmp_path):
    replay_bench.run(quick=True, out=tmp_path, ray_run=False)
    data = json.loads((tmp_path / "replay.json").read_text())
    assert data["stored_timesteps"] > 0 and len(data["tasks"]) == 8
    for k, v in data["insert"].items():
        assert _finite_positive(v), k
    for k in ("median", "p90", "after_insert_median", "after_insert_p90"):
        assert _finite_positive(data["sample_s"][k]), k
    for k, v in data["memory"].items():
        assert _finite_positive(v), k
    # Arrays alone: the synthetic tasks' float32 observations, actions and rewards.
    assert 4 * 4 < data["memory"]["array_bytes_per_timestep"] < 4 * (128 + 8 + 1) + 8
    assert data["ray_run"] is None


TASK = TaskInfo("Hopper", Box((11,)), Box((3,)), reward_scale=0.001)
MODEL = ModelConfig(embed_dim=32, n_layers=2, n_heads=2, context_len=6)


def _batch(seed: int, B: int = 6):
    rng = np.random.default_rng(seed)
    episodes = learner_bench._episodes(300, rng, 40)
    store = learner_bench.ReplayStore([TASK], capacity=10_000, offline_share=0.5, context_len=MODEL.context_len, seed=seed)
    store.add(episodes)
    return store.sample(B)


def test_step_timings_do_not_change_the_update():
    a = Learner(MODEL, [TASK], LearnerConfig(device="cpu"), seed=0)
    b = Learner(MODEL, [TASK], LearnerConfig(device="cpu"), seed=0)
    for i in range(3):
        batch = _batch(i)
        timings: dict = {}
        torch.manual_seed(i)  # same dropout and entropy noise for both
        ma = a.step(batch, timings=timings)
        torch.manual_seed(i)
        mb = b.step(batch)
        assert set(timings) == {"copy", "forward", "backward", "optimizer"}
        assert all(v >= 0 for v in timings.values())
        assert sum(timings.values()) <= ma["learner/update_s"] + 1e-6
        assert ma["loss/total"] == mb["loss/total"] and ma["learner/grad_norm"] == mb["learner/grad_norm"]
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def test_fused_optimizer_matches_per_tensor_loop():
    fused = Learner(MODEL, [TASK], LearnerConfig(device="cpu", warmup_updates=1), seed=0)
    loop = Learner(MODEL, [TASK], LearnerConfig(device="cpu", warmup_updates=1), seed=0)
    for g in loop.optimizer.param_groups:
        g["fused"] = False
    assert all(g["fused"] for g in fused.optimizer.param_groups)
    for i in range(5):
        batch = _batch(10 + i)
        torch.manual_seed(i)  # same dropout and entropy noise for both
        fused.step(batch)
        torch.manual_seed(i)
        loop.step(batch)
    moved = 0.0
    init = Learner(MODEL, [TASK], LearnerConfig(device="cpu"), seed=0).model.state_dict()
    for k, v in fused.model.state_dict().items():
        torch.testing.assert_close(v, loop.model.state_dict()[k], rtol=1e-4, atol=1e-5)
        moved = max(moved, (v - init[k]).abs().max().item())
    assert moved > 1e-4  # the updates did change the weights


def test_reference_batch_follows_the_reference_layout():
    cfg = odt.ReferenceConfig(embed_dim=16, n_layers=1, n_heads=2, context_len=5)
    rng = np.random.default_rng(0)
    trajectories = odt.synthetic_trajectories(200, cfg, rng, max_len=8)
    states, actions, rtg, timesteps, mask = odt.reference_batch(trajectories, 32, cfg, rng, np.zeros(11), np.ones(11))
    assert states.shape == (32, 5, 11) and actions.shape == (32, 5, 3) and rtg.shape == (32, 6, 1)
    assert timesteps.shape == (32, 5) and mask.shape == (32, 5)
    # Padding goes on the left; real steps are contiguous to the right.
    for row in mask.numpy():
        n = int(row.sum())
        assert n >= 1 and np.all(row[5 - n:] == 1) and np.all(row[: 5 - n] == 0)
    assert float(actions.abs().max()) < 1.0
    # Returns-to-go are scaled sums of the rest of the episode's rewards.
    rewards = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    np.testing.assert_allclose(odt._returns_to_go(rewards), [6.0, 5.0, 3.0])


def test_reference_step_trains():
    cfg = odt.ReferenceConfig(embed_dim=16, n_layers=1, n_heads=2, context_len=5, warmup_updates=1, lr=1e-3)
    rng = np.random.default_rng(0)
    trajectories = odt.synthetic_trajectories(200, cfg, rng, max_len=8)
    trainer = odt.ReferenceTrainer(cfg, seed=0)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    t0 = trainer.model.log_temperature.item()
    for _ in range(3):
        loss, nll, entropy = trainer.step(odt.reference_batch(trajectories, 8, cfg, rng, np.zeros(11), np.ones(11)))
        assert all(math.isfinite(x) for x in (loss, nll, entropy))
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("blocks.") for k in changed) and "mu.weight" in changed
    assert trainer.model.log_temperature.item() != t0


def test_vectorized_batch_equals_per_window_construction():
    rng = np.random.default_rng(0)
    infos = replay_bench._infos()
    store = replay_bench.ReplayStore(infos, capacity=5_000, offline_share=0.5, context_len=7, seed=0)
    for chunk in replay_bench._chunks(20_000, rng):
        store.add(chunk)
    for _ in range(5):
        eps, starts, sums = replay_bench._windows(store, rng)
        a = replay_bench.make_batch_per_window(eps, starts, 7, infos)
        for b in (replay_bench.make_batch(eps, starts, 7, infos, sums), replay_bench.make_batch(eps, starts, 7, infos)):
            for f in ("task", "returns_to_go", "timesteps", "mask"):
                assert getattr(a, f).dtype == getattr(b, f).dtype and np.array_equal(getattr(a, f), getattr(b, f)), f
            assert a.observations.keys() == b.observations.keys() and len(a.observations) == 8
            for k in a.observations:
                assert np.array_equal(a.observations[k], b.observations[k]) and a.observations[k].dtype == b.observations[k].dtype
                assert np.array_equal(a.actions[k], b.actions[k]) and a.actions[k].dtype == b.actions[k].dtype


def test_store_suffix_sums_survive_repeated_episodes_and_eviction():
    task = TaskInfo("T", Box((2,)), Box((1,)))
    store = replay_bench.ReplayStore([task], capacity=30, offline_share=0.5, context_len=4, seed=0)
    rng = np.random.default_rng(0)

    def ep(T):
        return replay_bench.Episode("T", rng.standard_normal((T, 2)).astype(np.float32),
                                    rng.uniform(-1, 1, (T, 1)).astype(np.float32), rng.uniform(0, 1, T).astype(np.float32), False)

    same = ep(10)
    store.add([same, same])  # one object stored twice
    store.add([same], offline=True)
    for _ in range(6):
        store.add([ep(10)])  # evicts the online copies of `same` one by one
        batch = store.sample(16)
        assert np.all(np.isfinite(batch.returns_to_go))
    assert id(same) in store.buffers[0].suffix_sums  # its offline copy is still stored
    assert len(store.buffers[0].suffix_sums) == len({id(e) for e in store.episodes("T")})
