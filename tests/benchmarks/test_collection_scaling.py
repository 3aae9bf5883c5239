"""Collection and scaling benchmarks (quick, tiny) and the policy's inference modes they time."""
import json
import math

import numpy as np
import pytest
import torch

from agents.model import DecisionTransformer, ModelConfig
from agents.policy import Policy
from agents.spaces import Box, Discrete, TaskInfo

TASKS = [
    TaskInfo("vec", Box((3,)), Box((2,)), reward_scale=0.1),
    TaskInfo("img", Box((12, 12, 2), "uint8"), Discrete(4), reward_scale=0.5),
    TaskInfo("grid", Discrete(5), Discrete(3)),
]
CFG = ModelConfig(embed_dim=32, n_layers=3, n_heads=2, context_len=6, max_timestep=64)


def _obs(task, rng):
    if isinstance(task.observation, Discrete):
        return int(rng.integers(0, task.observation.n))
    if task.observation.is_image:
        return rng.integers(0, 256, task.observation.shape, dtype=np.uint8)
    return rng.normal(size=task.observation.shape).astype(np.float32)


def _lockstep(modes, slot_tasks, steps, subsets=False, reset_at=None, reload_at=None, seed=0):
    """One Policy per inference mode, fed the same observations and rewards; every policy's
    action history is overwritten with the first one's, so their contexts stay equal even where
    their actions differ. Returns {mode: per step, the deterministic actions flattened}."""
    torch.manual_seed(seed)
    model = DecisionTransformer(CFG, TASKS)
    model.set_observation_stats(0, [0.5, -0.5, 0.0], [2.0, 1.0, 0.5])
    policies = {m: Policy(model, TASKS, len(slot_tasks), seed=0, inference=m) for m in modes}
    rng = np.random.default_rng(seed)
    for p in policies.values():
        for s, i in enumerate(slot_tasks):
            p.reset(s, i, 3.0)
    logs = {m: [] for m in modes}
    for t in range(steps):
        slots = list(range(len(slot_tasks)))
        if subsets and t % 3 == 1:
            slots = slots[::2]  # some steps act for a subset of slots, out of the cache's order
        obs = [_obs(TASKS[slot_tasks[s]], rng) for s in slots]
        acts = {m: p.act(slots, obs, deterministic=True) for m, p in policies.items()}
        for m in modes:
            logs[m].append(np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for a in acts[m]]))
        reward = rng.normal(size=len(slots)).astype(np.float32)
        for p in policies.values():
            p.rewards(slots, reward)
            ref = policies[modes[0]]
            for s in slots:
                p._act_ring[s][:] = ref._act_ring[s]
        if reset_at is not None and t == reset_at:
            for p in policies.values():
                p.reset(0, slot_tasks[0], 1.0)
        if reload_at is not None and t == reload_at:
            torch.manual_seed(seed + 1)
            other = DecisionTransformer(CFG, TASKS).state_dict()
            for p in policies.values():
                p.load_weights(other)
    return logs


def test_last_step_inference_equals_whole_window_forward():
    # New weights at step 10 (the cached token embeddings are recomputed) and a reset at step 8.
    logs = _lockstep(("full", "last"), [0, 1, 2, 0], steps=3 * CFG.context_len, subsets=True, reset_at=8,
                     reload_at=10)
    for a, b in zip(logs["full"], logs["last"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_kv_cache_is_exact_within_the_first_K_steps_and_close_after():
    K = CFG.context_len
    logs = _lockstep(("last", "kv_cache"), [0, 1, 2, 0], steps=K, subsets=True)
    for a, b in zip(logs["last"], logs["kv_cache"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Past K steps the cache approximates: on the continuous task the actions drift but stay in range.
    logs = _lockstep(("last", "kv_cache"), [0, 0], steps=3 * K)
    diffs = [np.max(np.abs(a - b)) for a, b in zip(logs["last"], logs["kv_cache"])]
    assert max(diffs[:K]) < 1e-5
    assert all(np.all(np.abs(b) <= 1) for b in logs["kv_cache"])


def test_kv_cache_rebuilds_from_the_window_after_new_weights_and_on_reset():
    K = CFG.context_len
    # New weights at step K + 2: the cache is rebuilt from the window there, so that step is exact
    # (later ones approximate again). A reset at step 3 empties slot 0's cache.
    logs = _lockstep(("last", "kv_cache"), [0, 1, 0], steps=K + 4, reload_at=K + 1, reset_at=3)
    np.testing.assert_allclose(logs["last"][K + 2], logs["kv_cache"][K + 2], atol=1e-5)
    np.testing.assert_allclose(logs["last"][4], logs["kv_cache"][4], atol=1e-5)


def test_unknown_inference_mode_rejected():
    with pytest.raises(ValueError, match="'fast'"):
        Policy(DecisionTransformer(CFG, TASKS), TASKS, 1, inference="fast")


# ---------------------------------------------------------------------------------------
# The benchmarks in quick mode with tiny sizes.


def _finite_positive(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_quick_collection_benchmark(tmp_path):
    from benchmarks import collection

    torch.set_num_threads(1)
    data = collection.run(quick=True, out=tmp_path, tasks=("Hopper-v5",), num_envs=(8,), steps=30, rounds=1)
    saved = json.loads((tmp_path / "collection.json").read_text())
    assert saved["machine"]["cores"] >= 1
    figs = saved["results"]["Hopper-v5"]["8"]
    assert set(figs) == set(collection.CONTENDERS)
    assert all(_finite_positive(f["steps_per_s"]) for f in figs.values())
    assert _finite_positive(saved["odt_speedup_last_vs_full"]["Hopper-v5"]["8"])
    assert saved["kv_cache_action_difference"][0]["max_abs_diff_first_K_steps"] < 1e-4
    assert [r["ratio"] for r in saved["ratios"]] == ["mlp/rllib", "mlp/raw", "odt/rllib"]  # the 8-env targets
    assert all(_finite_positive(r["value"]) and r["met"] == (r["value"] >= r["target"]) for r in saved["ratios"])
    assert (tmp_path / "collection.png").stat().st_size > 0
    assert "| Hopper-v5 | odt/rllib | 8 |" in (tmp_path / "collection.md").read_text()
    assert data["results"] == saved["results"]


def test_quick_scaling_benchmark(tmp_path, monkeypatch):
    from benchmarks import scaling

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # One policy keeps the Ray part small (3 actors); the ODT one is RolloutWorker's default path.
    scaling.run(quick=True, out=tmp_path, actors=(1, 2), policies=("mlp",), num_envs=2, steps=20, rounds=1)
    saved = json.loads((tmp_path / "scaling.json").read_text())
    for policy in ("mlp",):
        for n in ("1", "2"):
            fig = saved["results"][policy][n]
            assert _finite_positive(fig["steps_per_s"]) and _finite_positive(fig["per_actor"])
        assert saved["results"][policy]["1"]["speedup_vs_1"] == 1.0
    assert saved["physical_cores"] >= 1
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_kv_cache_difference_on_a_stored_model(tmp_path):
    import safetensors.torch
    import yaml

    from benchmarks import collection
    from envs.registry import get_task

    cfg = {"embed_dim": 16, "n_layers": 2, "n_heads": 2, "context_len": 4, "max_timestep": 64}
    torch.manual_seed(0)
    model = DecisionTransformer(ModelConfig(**cfg), [get_task("CartPole-v1").info(), get_task("Pendulum-v1").info()])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"tasks": ["CartPole-v1", "Pendulum-v1"], "model": cfg}))
    safetensors.torch.save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    loaded = collection.trained_model(tmp_path)
    diff = collection.kv_cache_action_difference("Pendulum-v1", 12, model=loaded)
    assert diff["max_abs_diff_first_K_steps"] < 1e-5  # exact while the episode is shorter than K
    assert diff["steps_after_K"] == 8 and math.isfinite(diff["max_abs_diff_after_K_steps"])
