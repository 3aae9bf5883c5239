import copy

import numpy as np
import pytest
import torch

from frontier.agents.loss import odt_loss
from frontier.agents.model import DecisionTransformer, ModelConfig, batch_to_tensors
from frontier.agents.spaces import Box, Discrete, TaskInfo
from frontier.agents.trajectory import make_batch


def _mixed_batch(tasks, make_episode, K, seed=0):
    rng = np.random.default_rng(seed)
    episodes = [make_episode(tasks[i], 10, rng) for i in (2, 0, 1, 0, 1, 2)]
    return make_batch(episodes, [0, 1, 0, 2, 3, 4], K, tasks)


def test_mixed_task_forward_shapes(tasks, model_cfg, make_episode):
    model = DecisionTransformer(model_cfg, tasks)
    batch = _mixed_batch(tasks, make_episode, model_cfg.context_len)
    assert set(batch.observations) == {0, 1, 2}
    t = batch_to_tensors(batch, "cpu")
    hidden = model(t["task"], t["observations"], t["actions"], t["returns_to_go"], t["timesteps"])
    assert hidden.shape == (6, model_cfg.context_len, model_cfg.embed_dim)
    # Without `rows` the model finds each task's rows itself: same result.
    model.eval()
    with torch.no_grad():
        a = model(t["task"], t["observations"], t["actions"], t["returns_to_go"], t["timesteps"], rows=t["rows"])
        b = model(t["task"], t["observations"], t["actions"], t["returns_to_go"], t["timesteps"])
    torch.testing.assert_close(a, b)
    # Continuous and discrete heads on the same hidden batch.
    cont = model.action_distribution(0, hidden[t["rows"][0]].reshape(-1, model_cfg.embed_dim))
    disc = model.action_distribution(1, hidden[t["rows"][1]].reshape(-1, model_cfg.embed_dim))
    assert cont.sample().shape == (2 * model_cfg.context_len, 2)
    assert cont.mode().abs().max() < 1
    assert disc.sample().shape == (2 * model_cfg.context_len,)
    assert disc.log_prob(disc.mode()).shape == (2 * model_cfg.context_len,)
    assert torch.all(disc.entropy() <= np.log(4) + 1e-5)


def test_causality_mixed_batch(tasks, model_cfg, make_episode):
    """Changing steps t+1.. of every row leaves hidden states and outputs up to t unchanged."""
    torch.manual_seed(0)
    model = DecisionTransformer(model_cfg, tasks).eval()
    K, t_cut = model_cfg.context_len, 2
    batch = _mixed_batch(tasks, make_episode, K)
    t1 = batch_to_tensors(batch, "cpu")
    t2 = batch_to_tensors(copy.deepcopy(batch), "cpu")  # on CPU the tensors share the batch's memory
    gen = torch.Generator().manual_seed(1)
    for i, obs in t2["observations"].items():
        if obs.dtype == torch.uint8:
            obs[:, t_cut + 1 :] = torch.randint(0, 256, obs[:, t_cut + 1 :].shape, generator=gen, dtype=torch.uint8)
        elif obs.dtype == torch.int64:
            obs[:, t_cut + 1 :] = (obs[:, t_cut + 1 :] + 1) % tasks[i].observation.n
        else:
            obs[:, t_cut + 1 :] += 5.0
    for i, act in t2["actions"].items():
        # a_t itself must not influence step t either: change it from t_cut on.
        if act.dtype == torch.int64:
            act[:, t_cut:] = (act[:, t_cut:] + 1) % tasks[i].action.n
        else:
            act[:, t_cut:] = -act[:, t_cut:]
    t2["returns_to_go"][:, t_cut + 1 :] += 3.0
    t2["timesteps"][:, t_cut + 1 :] += 7
    with torch.no_grad():
        h1 = model(t1["task"], t1["observations"], t1["actions"], t1["returns_to_go"], t1["timesteps"])
        h2 = model(t2["task"], t2["observations"], t2["actions"], t2["returns_to_go"], t2["timesteps"])
    torch.testing.assert_close(h1[:, : t_cut + 1], h2[:, : t_cut + 1], rtol=1e-5, atol=1e-5)
    # The change is visible later, so the test can fail.
    assert (h1[:, t_cut + 1 :] - h2[:, t_cut + 1 :]).abs().max() > 1e-3
    for i in range(3):
        rows = t1["rows"][i]
        d1 = model.action_distribution(i, h1[rows, t_cut])
        d2 = model.action_distribution(i, h2[rows, t_cut])
        torch.testing.assert_close(d1.mode(), d2.mode())


def test_gradients_reach_model_and_temperature(tasks, model_cfg, make_episode):
    torch.manual_seed(0)
    model = DecisionTransformer(model_cfg, tasks)
    t = batch_to_tensors(_mixed_batch(tasks, make_episode, model_cfg.context_len), "cpu")
    loss, temperature_loss, metrics = odt_loss(model, t)
    assert set(metrics) >= {"loss/total", "loss/nll", "loss/temperature", "entropy/img", "temperature/vec", "nll/grid"}
    assert all(isinstance(v, float) for v in metrics.values())

    temperature_loss.backward()
    assert model.log_temperature.grad is not None and torch.all(model.log_temperature.grad != 0)
    # The temperature loss reaches nothing but the temperature.
    assert all(p.grad is None for n, p in model.named_parameters() if n != "log_temperature")

    model.zero_grad(set_to_none=True)
    loss.backward()
    assert model.log_temperature.grad is None  # alpha is detached in the policy loss
    for name in ("blocks.0.attn.qkv.weight", "image_encoder.convs.0.weight", "obs_encoders.0.proj.weight",
                 "obs_encoders.2.weight", "action_encoders.0.weight", "heads.1.weight", "no_action", "task_embed.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_loss_ignores_padding(tasks, model_cfg, make_episode):
    torch.manual_seed(0)
    model = DecisionTransformer(model_cfg, tasks).eval()
    rng = np.random.default_rng(0)
    ep = make_episode(tasks[0], 3, rng)  # shorter than K: padded
    batch = make_batch([ep], [0], model_cfg.context_len, tasks)
    t1, t2 = batch_to_tensors(batch, "cpu"), batch_to_tensors(copy.deepcopy(batch), "cpu")
    t2["actions"][0][:, 3:] = 0.999
    t2["observations"][0][:, 3:] = 100.0
    torch.manual_seed(1)
    l1 = odt_loss(model, t1)[2]["loss/nll"]
    torch.manual_seed(1)
    l2 = odt_loss(model, t2)[2]["loss/nll"]
    assert l1 == pytest.approx(l2, rel=1e-6)


def test_squashed_gaussian_log_prob_matches_torch(tasks, model_cfg):
    model = DecisionTransformer(model_cfg, tasks)
    torch.manual_seed(0)
    dist = model.action_distribution(0, torch.randn(5, model_cfg.embed_dim))
    ref = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(dist.mean, dist.std), [torch.distributions.TanhTransform()]
    )
    a = dist.sample()
    torch.testing.assert_close(dist.log_prob(a), ref.log_prob(a).sum(-1), rtol=1e-4, atol=1e-4)
    log_std = dist.std.log()
    assert torch.all(log_std >= model_cfg.log_std_min) and torch.all(log_std <= model_cfg.log_std_max)
    assert torch.isfinite(dist.log_prob(torch.ones(5, 2))).all()  # targets at the bound stay finite


def test_image_channel_mismatch_rejected(model_cfg):
    tasks = [
        TaskInfo("a", Box((8, 8, 4), "uint8"), Discrete(2)),
        TaskInfo("b", Box((8, 8, 3), "uint8"), Discrete(2)),
    ]
    with pytest.raises(ValueError, match=r"\[3, 4\]"):
        DecisionTransformer(model_cfg, tasks)


def test_atari_sized_frames_work():
    cfg = ModelConfig(embed_dim=16, n_layers=1, n_heads=2, context_len=2)
    model = DecisionTransformer(cfg, [TaskInfo("pong", Box((84, 84, 4), "uint8"), Discrete(6))])
    obs = torch.randint(0, 256, (1, 2, 84, 84, 4), dtype=torch.uint8)
    h = model(torch.zeros(1, dtype=torch.long), {0: obs}, {0: torch.zeros(1, 2, dtype=torch.long)},
              torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long))
    assert h.shape == (1, 2, 16)
    # Conv FLOPs count: 84x84 frames cost far more than the dense layers.
    assert model.flops_per_token(0) > 2 * 2 * 16 * 16 * 4 * 21 * 21


def test_observation_stats_in_state_dict_and_timestep_clamp(tasks, model_cfg):
    model = DecisionTransformer(model_cfg, tasks)
    model.set_observation_stats(0, [1.0, 2.0, 3.0], [2.0, 0.0, 1.0])
    sd = model.state_dict()
    torch.testing.assert_close(sd["obs_encoders.0.obs_mean"], torch.tensor([1.0, 2.0, 3.0]))
    assert sd["obs_encoders.0.obs_std"][1] == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="task 1"):
        model.set_observation_stats(1, [0.0], [1.0])
    with pytest.raises(ValueError, match="shape"):
        model.set_observation_stats(0, [0.0], [1.0])
    model.eval()
    args = (torch.zeros(1, dtype=torch.long), {0: torch.zeros(1, 2, 3)}, {0: torch.zeros(1, 2, 2)}, torch.zeros(1, 2))
    with torch.no_grad():
        h_big = model(*args, torch.tensor([[10_000, 10_001]]))
        h_max = model(*args, torch.tensor([[model_cfg.max_timestep - 1] * 2]))
    torch.testing.assert_close(h_big, h_max)


def test_parameter_and_flop_counts(tasks, model_cfg):
    model = DecisionTransformer(model_cfg, tasks)
    C, L = model_cfg.embed_dim, model_cfg.n_layers
    block = sum(p.numel() for p in model.blocks.parameters())
    assert block == L * (12 * C * C + 13 * C)  # qkv, proj, fc, proj weights + biases + two LayerNorms
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    # The discrete-obs, discrete-action task uses only lookups besides the shared stack and its head.
    expected = 2 * (block + 2 * C + C * 3 + 3) + 2 * L * model_cfg.context_len * C
    assert model.flops_per_token(2) == expected
    assert model.flops_per_token() == max(model.flops_per_token(i) for i in range(3))


def test_transform_at_the_last_positions_equals_the_whole_window(tasks, model_cfg):
    torch.manual_seed(0)
    model = DecisionTransformer(model_cfg, tasks).eval()
    x = torch.randn(3, model_cfg.context_len, model_cfg.embed_dim)  # (B, K, C) tokens
    full = model.transform(x)  # (B, K, C)
    last = torch.tensor([model_cfg.context_len - 1, 2, 0])
    torch.testing.assert_close(model.transform(x, last), full[torch.arange(3), last], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.transform(x, -1), full[:, -1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="-1"):
        model.transform(x, 2)
