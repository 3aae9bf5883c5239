import numpy as np
import pytest
import safetensors.torch
import torch

from frontier.agents.learner import Learner, LearnerConfig, lr_factor
from frontier.agents.model import ModelConfig, SquashedGaussian, batch_to_tensors
from frontier.agents.spaces import Box, Discrete, TaskInfo
from frontier.agents.trajectory import Episode, make_batch, sample_windows


def _batches(tasks, make_episode, K, n, seed=0):
    rng = np.random.default_rng(seed)
    episodes = [make_episode(tasks[i % len(tasks)], 8 + i, rng) for i in range(9)]
    out = []
    for _ in range(n):
        idx, starts = sample_windows(np.array([e.length for e in episodes]), 8, K, rng)
        out.append(make_batch([episodes[i] for i in idx], starts, K, tasks))
    return out


def test_step_metrics(tasks, model_cfg, make_episode):
    learner = Learner(model_cfg, tasks, LearnerConfig(device="cpu", warmup_updates=10), seed=0)
    assert learner.device == torch.device("cpu")
    batch = _batches(tasks, make_episode, model_cfg.context_len, 1)[0]
    m = learner.step(batch)
    assert learner.updates == 1
    assert m["learner/lr"] == pytest.approx(3e-4 / 10)  # first warmup step
    assert m["learner/grad_norm"] > 0 and m["learner/update_s"] > 0
    expected_flops = 3 * sum(learner.model.flops_per_token(int(t)) * batch.mask[b].sum() for b, t in enumerate(batch.task))
    assert m["learner/flops"] == pytest.approx(expected_flops)
    assert learner.step(batch)["learner/lr"] == pytest.approx(2 * 3e-4 / 10)


def test_save_restore_gives_identical_next_update(tasks, model_cfg, make_episode, tmp_path):
    cfg = LearnerConfig(device="cpu", warmup_updates=3)
    batches = _batches(tasks, make_episode, model_cfg.context_len, 4)
    a = Learner(model_cfg, tasks, cfg, seed=0)
    for b in batches[:3]:
        a.step(b)
    a.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    torch.load(tmp_path / "ckpt" / "learner_state.pt", weights_only=True)  # plain data only

    ma = a.step(batches[3])
    # A learner built with another seed, restored, must continue exactly like `a`. (Both
    # draw dropout from the process's torch generator, which the restore resets.)
    b = Learner(model_cfg, tasks, cfg, seed=123)
    b.load(tmp_path / "ckpt")
    assert b.updates == 3
    mb = b.step(batches[3])
    for key in ("loss/total", "loss/nll", "loss/temperature", "learner/grad_norm", "learner/lr"):
        assert ma[key] == mb[key], key
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    # Dropout is on, so the RNG state matters: a learner without the restored RNG differs.
    c = Learner(model_cfg, tasks, cfg, seed=123)
    c.load(tmp_path / "ckpt")
    torch.manual_seed(999)
    assert c.step(batches[3])["loss/total"] != ma["loss/total"]


def test_weights_roundtrip_and_export(tasks, model_cfg, make_episode, tmp_path):
    a = Learner(model_cfg, tasks, LearnerConfig(device="cpu"), seed=0)
    a.model.set_observation_stats(0, [1.0, 2.0, 3.0], [1.0, 1.0, 2.0])
    w = a.weights()
    assert "log_temperature" in w and "obs_encoders.0.obs_mean" in w
    a.step(_batches(tasks, make_episode, model_cfg.context_len, 1)[0])
    assert not torch.equal(w["blocks.0.attn.qkv.weight"], a.model.state_dict()["blocks.0.attn.qkv.weight"])  # a copy
    b = Learner(model_cfg, tasks, LearnerConfig(device="cpu"), seed=1)
    b.load_weights(a.weights())
    path = tmp_path / "w.safetensors"
    b.export_weights(path)
    loaded = safetensors.torch.load_file(str(path))
    for k, v in a.model.state_dict().items():
        assert torch.equal(loaded[k], v), k


def test_ema_policy_is_the_moving_average_of_the_parameters(tasks, model_cfg, make_episode, tmp_path):
    decay = 0.5
    learner = Learner(model_cfg, tasks, LearnerConfig(device="cpu", ema_decay=decay), seed=0)
    name = "blocks.0.attn.qkv.weight"
    expected = None
    for i, batch in enumerate(_batches(tasks, make_episode, model_cfg.context_len, 4)):
        learner.step(batch)
        p = learner.model.state_dict()[name].clone()
        d = min(decay, (1 + i) / (10 + i))
        expected = p if expected is None else d * expected + (1 - d) * p
    w = learner.weights()
    torch.testing.assert_close(w[name], expected)
    assert not torch.equal(w[name], learner.model.state_dict()[name])  # training goes on with the raw weights
    assert torch.equal(w["obs_encoders.0.obs_std"], learner.model.state_dict()["obs_encoders.0.obs_std"])  # buffers as they are
    learner.export_weights(tmp_path / "w.safetensors")
    assert torch.equal(safetensors.torch.load_file(str(tmp_path / "w.safetensors"))[name], w[name])


def test_ema_survives_save_and_load(tasks, model_cfg, make_episode, tmp_path):
    cfg = LearnerConfig(device="cpu", ema_decay=0.9)
    batches = _batches(tasks, make_episode, model_cfg.context_len, 4)
    a = Learner(model_cfg, tasks, cfg, seed=0)
    for b in batches[:3]:
        a.step(b)
    a.save(tmp_path / "ckpt")
    # The checkpoint's model file is the policy (the average); the raw parameters are in the state.
    on_disk = safetensors.torch.load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    for k, v in a.weights().items():
        assert torch.equal(on_disk[k], v), k
    a.step(batches[3])
    b = Learner(model_cfg, tasks, cfg, seed=1)
    b.load(tmp_path / "ckpt")  # restores the process's torch generator too, as it was at the save
    b.step(batches[3])
    for k, v in a.model.state_dict().items():
        assert torch.equal(b.model.state_dict()[k], v), k
    for k, v in a.weights().items():
        assert torch.equal(b.weights()[k], v), k


def test_load_missing_checkpoint_names_path(tasks, model_cfg, tmp_path):
    learner = Learner(model_cfg, tasks, LearnerConfig(device="cpu"), seed=0)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        learner.load(tmp_path)


def test_learner_fits_trivial_behaviour_cloning():
    """Discrete: action = [obs[0] > 0]; continuous: action = sign(obs[1]) * 0.8. Mixed batches."""
    torch.manual_seed(0)
    tasks = [TaskInfo("sign", Box((2,)), Discrete(2)), TaskInfo("cont", Box((2,)), Box((1,)))]
    rng = np.random.default_rng(0)
    episodes = []
    for k in range(40):
        obs = rng.normal(size=(20, 2)).astype(np.float32)
        if k % 2 == 0:
            episodes.append(Episode("sign", obs, (obs[:, 0] > 0).astype(np.int64), np.ones(20, np.float32), True))
        else:
            act = (np.sign(obs[:, 1:2]) * 0.8).astype(np.float32)
            episodes.append(Episode("cont", obs, act, np.ones(20, np.float32), True))
    cfg = ModelConfig(embed_dim=32, n_layers=1, n_heads=2, context_len=4, dropout=0.0)
    learner = Learner(cfg, tasks, LearnerConfig(device="cpu", lr=1e-3, warmup_updates=20, grad_clip=1.0), seed=0)
    lengths = np.array([e.length for e in episodes])
    for _ in range(300):
        idx, starts = sample_windows(lengths, 32, cfg.context_len, rng)
        metrics = learner.step(make_batch([episodes[i] for i in idx], starts, cfg.context_len, tasks))

    # Fresh held-out data, greedy actions.
    obs = rng.normal(size=(64, 4, 2)).astype(np.float32)
    model = learner.model.eval()
    with torch.no_grad():
        o = torch.from_numpy(obs)
        h = model(torch.tensor([0] * 32 + [1] * 32), {0: o[:32], 1: o[32:]},
                  {0: torch.from_numpy((obs[:32, :, 0] > 0).astype(np.int64)),
                   1: torch.from_numpy(np.sign(obs[32:, :, 1:2]) * 0.8)},
                  torch.ones(64, 4), torch.arange(4).repeat(64, 1))
        disc = model.action_distribution(0, h[:32].reshape(-1, 32)).mode().numpy()
        cont = model.action_distribution(1, h[32:].reshape(-1, 32)).mode().numpy()[:, 0]
    acc = (disc == (obs[:32, :, 0] > 0).reshape(-1)).mean()
    sign_acc = (np.sign(cont) == np.sign(obs[32:, :, 1]).reshape(-1)).mean()
    assert acc > 0.95, acc
    assert sign_acc > 0.95, sign_acc
    assert metrics["nll/sign"] < 0.3, metrics  # ln 2 = 0.69 at chance; the entropy bonus keeps it above 0


def test_config_errors_name_the_value():
    tiny, tasks = ModelConfig(embed_dim=8, n_layers=1, n_heads=1), [TaskInfo("t", Box((1,)), Discrete(2))]
    with pytest.raises(ValueError, match="'gpu7'"):
        Learner(tiny, tasks, LearnerConfig(device="gpu7"), seed=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Learner(tiny, tasks, LearnerConfig(device="cuda"), seed=0)
    with pytest.raises(ValueError, match="n_heads 3"):
        ModelConfig(embed_dim=16, n_heads=3)
    with pytest.raises(ValueError, match="grad_clip"):
        LearnerConfig(grad_clip=0.0)


def test_step_accepts_prefetched_tensors(tasks, model_cfg, make_episode):
    from frontier.agents.model import batch_to_tensors

    batch = _batches(tasks, make_episode, model_cfg.context_len, 1)[0]
    a = Learner(model_cfg, tasks, LearnerConfig(device="cpu"), seed=0)
    ma = a.step(batch)
    b = Learner(model_cfg, tasks, LearnerConfig(device="cpu"), seed=0)
    mb = b.step(batch, tensors=batch_to_tensors(batch, b.device))
    assert ma["loss/total"] == mb["loss/total"]



class _OneGaussian:
    """Stands in for the model in `odt_loss`: every step's action distribution is the same
    squashed Gaussian, with a learnable mean and log-std."""

    def __init__(self, task: TaskInfo, mean: float, std: float, alpha: float):
        self.tasks = [task]
        self.log_temperature = torch.tensor([np.log(alpha)], requires_grad=True)
        self.mean = torch.full((task.action.dim,), mean, requires_grad=True)
        self.log_std = torch.full((task.action.dim,), float(np.log(std)), requires_grad=True)

    def __call__(self, task, observations, actions, returns_to_go, timesteps, rows=None):
        return torch.zeros(*returns_to_go.shape, 1)  # (B, K, 1)

    def action_distribution(self, i, hidden):
        n = hidden.shape[0]
        return SquashedGaussian(self.mean.expand(n, -1), self.log_std.expand(n, -1))


@pytest.mark.parametrize("nll_beta", [0.0, 1.0])
def test_fitting_own_samples_does_not_widen_the_policy(nll_beta):
    """Online, the policy is fit to actions it sampled itself. There the fit's gradient on the
    log-std vanishes, and only the entropy bonus pushes it up: by alpha (per dimension) with
    plain NLL. beta-NLL weighs the fit by std^2, so the bonus must be weighed alike, else it
    widens a narrow policy about 1/std^2 times faster (std^2 grows by alpha each round)."""
    from frontier.agents.loss import odt_loss

    alpha, std = 0.1, 0.1
    task = TaskInfo("cont", Box((1,)), Box((2,)))
    model = _OneGaussian(task, mean=0.3, std=std, alpha=alpha)
    torch.manual_seed(0)
    B, K = 512, 8
    with torch.no_grad():
        own = model.action_distribution(0, torch.zeros(B * K, 1)).sample().reshape(B, K, 2)
    tensors = {"task": torch.zeros(B, dtype=torch.long), "observations": {0: torch.zeros(B, K, 1)},
               "actions": {0: own}, "returns_to_go": torch.zeros(B, K), "timesteps": torch.zeros(B, K, dtype=torch.long),
               "mask": torch.ones(B, K), "rows": {0: torch.arange(B)}}
    policy_loss, _, _ = odt_loss(model, tensors, nll_beta)
    policy_loss.backward()
    widening = -model.log_std.grad  # (2,): how hard a gradient step pushes the log-std up
    weight = std ** 2 if nll_beta else 1.0
    assert torch.all(widening > 0), widening  # the bonus still widens a little
    assert torch.all(widening < 2 * alpha * weight), widening


def _deterministic_task_data(rng):
    """Episodes of a 3-D-action task whose actions are a fixed function of the observation."""
    task = TaskInfo("vec", Box((4,)), Box((3,)), reward_scale=0.1)
    W = rng.normal(size=(4, 3))
    eps = []
    for _ in range(30):
        obs = rng.normal(size=(50, 4)).astype(np.float32)
        eps.append(Episode("vec", obs, (0.8 * np.tanh(obs @ W)).astype(np.float32), np.ones(50, np.float32), True))
    return task, eps


@pytest.mark.parametrize("temperature_lr,reaches", [(3e-3, True), (1e-4, False)])
def test_entropy_of_a_near_deterministic_fit_reaches_its_target(temperature_lr, reaches):
    # Imitating deterministic actions drives the entropy far below its target (-3 for 3-D
    # actions); the temperature must bring it back within the run, or exploration is a no-op.
    rng = np.random.default_rng(0)
    task, eps = _deterministic_task_data(rng)
    lengths = np.array([e.length for e in eps])
    cfg = ModelConfig(embed_dim=32, n_layers=1, n_heads=2, context_len=5, max_timestep=64, dropout=0.0)
    learner = Learner(cfg, [task], LearnerConfig(device="cpu", warmup_updates=10, temperature_lr=temperature_lr), seed=0)
    entropies = []
    for u in range(1500):
        idx, starts = sample_windows(lengths, 32, 5, rng)
        entropies.append(learner.step(make_batch([eps[i] for i in idx], starts, 5, [task]))["entropy/vec"])
    first, last = np.mean(entropies[200:300]), np.mean(entropies[-300:])
    assert first < task.entropy_target - 2.0  # the fit did make the policy near-deterministic
    if reaches:
        assert abs(last - task.entropy_target) < 1.0, last
    else:
        assert last < task.entropy_target - 3.0, last  # ODT's 1e-4: still far below after 1500 updates


@pytest.mark.parametrize("timestep_embedding", [True, False])
def test_trained_model_acts_on_its_return_target(timestep_embedding):
    # Two behaviours that observations cannot tell apart, told apart by their returns: the mean
    # action must follow the return-to-go the policy is conditioned on.
    from frontier.agents.policy import Policy

    rng = np.random.default_rng(0)
    task = TaskInfo("vec", Box((3,)), Box((2,)), reward_scale=0.1)
    eps = []
    for k in range(40):
        c = 0.6 if k % 2 else -0.6
        # Rewards 0.05 and 2 per step: returns-to-go of the two never overlap (<= 0.15 and >= 0.2
        # scaled), so the return target alone tells them apart, with or without timesteps.
        eps.append(Episode("vec", rng.normal(size=(30, 3)).astype(np.float32), np.full((30, 2), c, np.float32),
                           np.full(30, 2.0 if c > 0 else 0.05, np.float32), True))  # returns 60 and 1.5
    lengths = np.array([e.length for e in eps])
    cfg = ModelConfig(embed_dim=32, n_layers=1, n_heads=2, context_len=5, max_timestep=64, dropout=0.0,
                      timestep_embedding=timestep_embedding)
    learner = Learner(cfg, [task], LearnerConfig(device="cpu", warmup_updates=10), seed=0)
    for _ in range(300):
        idx, starts = sample_windows(lengths, 32, 5, rng)
        learner.step(make_batch([eps[i] for i in idx], starts, 5, [task]))
    policy = Policy(learner.model, [task], num_slots=2)
    policy.reset(0, 0, target_return=60.0)
    policy.reset(1, 0, target_return=1.5)
    obs = rng.normal(size=(3,)).astype(np.float32)
    high, low = policy.act([0, 1], [obs, obs], deterministic=True)
    np.testing.assert_allclose(high, [0.6, 0.6], atol=0.15)
    np.testing.assert_allclose(low, [-0.6, -0.6], atol=0.15)


def test_a_non_finite_batch_stops_before_it_reaches_the_weights(tasks, model_cfg, make_episode):
    learner = Learner(model_cfg, tasks, LearnerConfig(device="cpu"), seed=0)
    batch = next(b for b in _batches(tasks, make_episode, model_cfg.context_len, 10) if 0 in b.observations)
    batch.observations[0][:] = np.nan  # NaN observations of the vector task
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    with pytest.raises(FloatingPointError, match="non-finite loss at update 1"):
        learner.step(batch)
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())


def test_a_non_finite_critic_term_stops_before_it_reaches_the_weights(tasks, model_cfg, make_episode):
    # NaN rewards reach only the critic's TD target (returns-to-go were summed before): the policy
    # loss stays finite, so a guard on it alone would let the critic's NaN into the weights.
    learner = Learner(model_cfg, tasks, LearnerConfig(device="cpu", critic_weight=2.5), seed=0)
    batch = next(b for b in _batches(tasks, make_episode, model_cfg.context_len, 10) if 0 in b.observations)
    batch.rewards[:] = np.nan
    before = {k: v.clone() for k, v in learner.critic.state_dict().items()}
    with pytest.raises(FloatingPointError, match="loss/critic"):
        learner.step(batch)
    assert all(torch.equal(before[k], v) for k, v in learner.critic.state_dict().items())


def test_lr_schedules():
    constant = LearnerConfig(warmup_updates=10)
    assert [lr_factor(constant, u) for u in (0, 4, 9, 10, 10_000)] == [0.1, 0.5, 1.0, 1.0, 1.0]
    cosine = LearnerConfig(warmup_updates=10, lr_schedule="cosine", lr_floor=0.1, decay_updates=110)
    assert lr_factor(cosine, 9) == 1.0 and lr_factor(cosine, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 60) == pytest.approx(0.55)  # halfway down the cosine
    assert lr_factor(cosine, 110) == pytest.approx(0.1) and lr_factor(cosine, 5000) == pytest.approx(0.1)
    assert lr_factor(LearnerConfig(lr_schedule="cosine"), 10_000) == 1.0  # no decay horizon: no decay
    with pytest.raises(ValueError, match="lr_schedule"):
        LearnerConfig(lr_schedule="linear")


def test_validate_measures_the_policy_and_changes_nothing(tasks, model_cfg, make_episode):
    learner = Learner(model_cfg, tasks, LearnerConfig(device="cpu", ema_decay=0.9), seed=0)
    batches = _batches(tasks, make_episode, model_cfg.context_len, 3)
    for b in batches[:2]:
        learner.step(b)
    tensors = batch_to_tensors(batches[2], "cpu")
    raw = {k: v.clone() for k, v in learner.model.state_dict().items()}
    rng = torch.get_rng_state()
    val = learner.validate(tensors)
    assert torch.equal(torch.get_rng_state(), rng)  # no random numbers drawn
    assert all(torch.equal(v, learner.model.state_dict()[k]) for k, v in raw.items())  # raw weights back
    assert set(val) == {t.name for t in tasks} and all(np.isfinite(list(m.values())).all() for m in val.values())
    assert 0.0 <= val["img"]["action_error"] <= 1.0  # a share of steps for discrete actions
    # It measures the policy (the average), not the raw parameters.
    policy = Learner(model_cfg, tasks, LearnerConfig(device="cpu"), seed=0)
    policy.load_weights(learner.weights())
    again = policy.validate(tensors)
    assert all(again[t] == pytest.approx(m) for t, m in val.items())
    assert learner.model.training  # back in train mode


def test_predicted_targets_follow_what_each_start_can_reach():
    # Starts told apart by the observation: from a "good" start the better behaviour (+0.6) returns
    # 60, from a "bad" one only 15; the worse behaviour (-0.6) returns 1.5 from either. The return
    # head must predict more from the good start, and conditioning each episode on its own
    # prediction must pick the better behaviour from both (one target of 60 is unreachable from the bad).
    from frontier.agents.policy import Policy

    rng = np.random.default_rng(0)
    task = TaskInfo("vec", Box((3,)), Box((2,)), reward_scale=0.1)
    eps = []
    for k in range(80):
        start = 1.0 if k % 4 < 2 else -1.0
        better = k % 2 == 0
        reward = (2.0 if start > 0 else 0.5) if better else 0.05
        obs = np.concatenate([np.full((30, 1), start), rng.normal(0, 0.1, (30, 2))], 1).astype(np.float32)
        eps.append(Episode("vec", obs, np.full((30, 2), 0.6 if better else -0.6, np.float32),
                           np.full(30, reward, np.float32), True))
    lengths = np.array([e.length for e in eps])
    cfg = ModelConfig(embed_dim=32, n_layers=1, n_heads=2, context_len=5, dropout=0.0, return_head=True)
    learner = Learner(cfg, [task], LearnerConfig(device="cpu", warmup_updates=10, return_expectile=0.95), seed=0)
    returns = 0.1 * np.array([e.ret for e in eps])
    learner.model.set_return_stats(0, returns.mean(), returns.std(), returns.min(), returns.max())
    losses = []
    for u in range(400):
        idx, starts = sample_windows(lengths, 32, 5, rng)
        losses.append(learner.step(make_batch([eps[i] for i in idx], starts, 5, [task]))["loss/return_expectile"])
    assert np.mean(losses[-50:]) < 0.5 * np.mean(losses[:50])
    good, bad = np.array([[1.0, 0, 0]], np.float32), np.array([[-1.0, 0, 0]], np.float32)
    with torch.no_grad():
        predicted = [float(learner.model.predict_return(0, torch.from_numpy(o)[None])) / 0.1 for o in (good, bad)]
    # From the first steps only: near the best return from each start (60 and 15), not the
    # returns-to-go of later steps, which the observation cannot tell from the start.
    assert predicted[0] > 40 and 8 < predicted[1] < 20, predicted
    far = torch.tensor([[[50.0, 0, 0]], [[-50.0, 0, 0]]])  # no episode started near these
    with torch.no_grad():
        extrapolated = learner.model.predict_return(0, far) / 0.1
    assert ((1.5 - 1e-4 <= extrapolated) & (extrapolated <= 60 + 1e-4)).all(), extrapolated  # within the data's returns
    policy = Policy(learner.model, [task], num_slots=2)
    policy.reset(0, 0, target_return=None)
    policy.reset(1, 0, target_return=None)
    a_good, a_bad = policy.act([0, 1], [good[0], bad[0]], deterministic=True)
    assert a_good.min() > 0.3 and a_bad.min() > 0.3, (a_good, a_bad)
    no_head = Policy(Learner(ModelConfig(embed_dim=32, n_layers=1, n_heads=2, context_len=5), [task],
                             LearnerConfig(device="cpu"), seed=0).model, [task], num_slots=1)
    with pytest.raises(ValueError, match="return head"):
        no_head.reset(0, 0, target_return=None)
