import numpy as np
import pytest
import torch

from frontier.agents.model import DecisionTransformer, ModelConfig, batch_to_tensors
from frontier.agents.policy import Policy
from frontier.agents.spaces import Box, Discrete, TaskInfo
from frontier.agents.trajectory import Episode, make_batch


def _observation(task, rng):
    if isinstance(task.observation, Discrete):
        return int(rng.integers(0, task.observation.n))
    if task.observation.is_image:
        return rng.integers(0, 256, task.observation.shape, dtype=np.uint8)
    return rng.normal(size=task.observation.shape).astype(np.float32)


def _rollout(policy, tasks, slot_tasks, steps, deterministic, seed=0, targets=None):
    """Step every slot `steps` times with random observations and rewards; returns per-slot logs."""
    rng = np.random.default_rng(seed)
    slots = list(range(len(slot_tasks)))
    rewards = rng.normal(size=(steps, len(slots))).astype(np.float32)
    for s, i in enumerate(slot_tasks):
        target = float(rewards[:, s].sum(dtype=np.float64)) if targets is None else targets[s]
        policy.reset(s, i, target)
    logs = {s: {"obs": [], "act": []} for s in slots}
    for t in range(steps):
        obs = [_observation(tasks[i], rng) for i in slot_tasks]
        actions = policy.act(slots, obs, deterministic=deterministic)
        for s in slots:
            logs[s]["obs"].append(obs[s])
            logs[s]["act"].append(actions[s])
        policy.rewards(slots, rewards[t])
    for s in slots:
        logs[s]["rew"] = rewards[:, s]
    return logs


def test_batched_act_returns_valid_actions(tasks, model_cfg):
    torch.manual_seed(0)
    policy = Policy(DecisionTransformer(model_cfg, tasks), tasks, num_slots=5, seed=0)
    logs = _rollout(policy, tasks, [0, 1, 2, 0, 1], steps=3, deterministic=False)
    for s, i in enumerate([0, 1, 2, 0, 1]):
        for a in logs[s]["act"]:
            if tasks[i].continuous:
                assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (2,)
                assert np.all(np.abs(a) <= 1)
            else:
                assert isinstance(a, int) and 0 <= a < tasks[i].action.n


def test_deterministic_is_repeatable_and_sampling_follows_seed(tasks, model_cfg):
    torch.manual_seed(0)
    model = DecisionTransformer(model_cfg, tasks)
    slot_tasks = [2, 0, 1]
    det = [_rollout(Policy(model, tasks, 3, seed=s), tasks, slot_tasks, 4, True) for s in (0, 1)]
    sto = [_rollout(Policy(model, tasks, 3, seed=s), tasks, slot_tasks, 4, False) for s in (7, 7, 8)]

    def flat(logs):
        return np.concatenate([np.ravel(a) for s in logs for a in logs[s]["act"]]).astype(np.float64)

    np.testing.assert_array_equal(flat(det[0]), flat(det[1]))  # mode ignores the seed
    np.testing.assert_array_equal(flat(sto[0]), flat(sto[1]))  # same seed, same samples
    assert not np.array_equal(flat(sto[0]), flat(sto[2]))


def test_rolling_context_matches_training_windows(tasks, model_cfg):
    """Beyond K steps the policy acts on the last K steps exactly as a training window shows them."""
    torch.manual_seed(0)
    model = DecisionTransformer(model_cfg, tasks)
    model.set_observation_stats(0, [0.5, -0.5, 0.0], [2.0, 1.0, 0.5])
    K, steps = model_cfg.context_len, 3 * model_cfg.context_len + 2
    slot_tasks = [0, 1, 2, 0]
    logs = _rollout(Policy(model, tasks, 4, seed=0), tasks, slot_tasks, steps, deterministic=True)
    model.eval()
    for s, i in enumerate(slot_tasks):
        ep = Episode(tasks[i].name, np.stack(logs[s]["obs"]), np.stack(logs[s]["act"]), logs[s]["rew"], True)
        for t in (1, K - 1, K, steps - 1):
            start = max(0, t - K + 1)
            tensors = batch_to_tensors(make_batch([ep], [start], K, tasks), "cpu")
            with torch.no_grad():
                h = model(tensors["task"], tensors["observations"], tensors["actions"], tensors["returns_to_go"],
                          tensors["timesteps"])
                mode = model.action_distribution(i, h[:, t - start]).mode()[0].numpy()
            if tasks[i].continuous:
                np.testing.assert_allclose(mode, logs[s]["act"][t], atol=1e-4)
            else:
                assert int(mode) == logs[s]["act"][t], (s, t)


def test_rtg_and_reset_bookkeeping(tasks, model_cfg):
    policy = Policy(DecisionTransformer(model_cfg, tasks), tasks, 2)
    policy.reset(0, 0, 10.0)  # reward_scale 0.1
    policy.reset(1, 1, 10.0)  # reward_scale 0.5
    policy.act([0, 1], [np.zeros(3, np.float32), np.zeros((12, 12, 2), np.uint8)], deterministic=True)
    policy.rewards([0, 1], [2.0, 2.0])
    np.testing.assert_allclose(policy._rtg, [0.8, 4.0])
    np.testing.assert_array_equal(policy._t, [1, 1])
    policy.reset(0, 2, 1.0)  # the slot switches task
    assert policy.act([0], [3], deterministic=True)[0] in range(3)


def test_bad_slots_rejected(tasks, model_cfg):
    policy = Policy(DecisionTransformer(model_cfg, tasks), tasks, 2)
    with pytest.raises(ValueError, match="slot 1"):
        policy.act([1], [np.zeros(3, np.float32)], deterministic=True)
    with pytest.raises(ValueError, match="slot 5"):
        policy.reset(5, 0, 0.0)


def test_load_weights_changes_actions(tasks, model_cfg):
    torch.manual_seed(0)
    policy = Policy(DecisionTransformer(model_cfg, tasks), tasks, 1)
    torch.manual_seed(1)
    other = DecisionTransformer(model_cfg, tasks)
    obs = np.ones(3, np.float32)
    policy.reset(0, 0, 1.0)
    before = policy.act([0], [obs], deterministic=True)[0]
    policy.load_weights(other.state_dict())
    policy.reset(0, 0, 1.0)
    after = policy.act([0], [obs], deterministic=True)[0]
    assert not np.allclose(before, after)


# Inference modes: "last" (the default) against the model's own whole-window forward.

MODE_TASKS = [
    TaskInfo("vec", Box((3,)), Box((2,)), reward_scale=0.1),
    TaskInfo("img", Box((12, 12, 2), "uint8"), Discrete(4), reward_scale=0.5),
    TaskInfo("grid", Discrete(5), Discrete(3)),
]
MODE_CFG = ModelConfig(embed_dim=32, n_layers=3, n_heads=2, context_len=6, max_timestep=64)


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
    model = DecisionTransformer(MODE_CFG, MODE_TASKS)
    model.set_observation_stats(0, [0.5, -0.5, 0.0], [2.0, 1.0, 0.5])
    policies = {m: Policy(model, MODE_TASKS, len(slot_tasks), seed=0, inference=m) for m in modes}
    rng = np.random.default_rng(seed)
    for p in policies.values():
        for s, i in enumerate(slot_tasks):
            p.reset(s, i, 3.0)
    logs = {m: [] for m in modes}
    for t in range(steps):
        slots = list(range(len(slot_tasks)))
        if subsets and t % 3 == 1:
            slots = slots[::2]  # some steps act for a subset of slots, out of the cache's order
        obs = [_obs(MODE_TASKS[slot_tasks[s]], rng) for s in slots]
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
            other = DecisionTransformer(MODE_CFG, MODE_TASKS).state_dict()
            for p in policies.values():
                p.load_weights(other)
    return logs


def test_last_step_inference_equals_whole_window_forward():
    # New weights at step 10 (the cached token embeddings are recomputed) and a reset at step 8.
    logs = _lockstep(("full", "last"), [0, 1, 2, 0], steps=3 * MODE_CFG.context_len, subsets=True, reset_at=8,
                     reload_at=10)
    for a, b in zip(logs["full"], logs["last"]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_unknown_inference_mode_rejected():
    with pytest.raises(ValueError, match="'fast'"):
        Policy(DecisionTransformer(MODE_CFG, MODE_TASKS), MODE_TASKS, 1, inference="fast")
