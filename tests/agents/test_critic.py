"""The RL-gradient option: TD3 critics whose gradient reaches the transformer."""
import numpy as np
import pytest

from frontier.agents.critic import Critic, td3_terms
from frontier.agents.learner import Learner, LearnerConfig
from frontier.agents.model import DecisionTransformer, ModelConfig, batch_to_tensors
from frontier.agents.policy import Policy
from frontier.agents.spaces import Box, TaskInfo
from frontier.agents.trajectory import Episode, make_batch, sample_windows

CFG = ModelConfig(embed_dim=32, n_layers=1, n_heads=2, context_len=5, max_timestep=64, dropout=0.0)


def _bandit_data(rng, n=60, T=10):
    """Uniformly random actions; each step pays 1 - (a - 0.5)^2, so the data's best action (0.5)
    is nowhere near its mean action (0)."""
    task = TaskInfo("vec", Box((3,)), Box((1,)), reward_scale=0.1)
    eps = []
    for _ in range(n):
        a = rng.uniform(-1, 1, (T, 1)).astype(np.float32)
        eps.append(Episode("vec", rng.normal(size=(T, 3)).astype(np.float32), a, (1 - (a[:, 0] - 0.5) ** 2), True))
    return task, eps


def test_critic_covers_only_continuous_vector_tasks(tasks):
    critic = Critic(DecisionTransformer(CFG, tasks))
    assert [critic.supports(i) for i in range(3)] == [True, False, False]
    assert critic.flops_per_step(0) > 0 and critic.flops_per_step(1) == 0
    with pytest.raises(ValueError, match="continuous actions and vector observations"):
        Critic(DecisionTransformer(CFG, tasks[1:]))


def test_actor_term_reaches_only_the_model_and_critic_loss_only_the_critic():
    rng = np.random.default_rng(0)
    task, eps = _bandit_data(rng, n=8)
    model = DecisionTransformer(CFG, [task])
    critic = Critic(model)
    idx, starts = sample_windows(np.array([e.length for e in eps]), 8, 5, rng)
    tensors = batch_to_tensors(make_batch([eps[i] for i in idx], starts, 5, [task]), "cpu")
    hidden = model(tensors["task"], tensors["observations"], tensors["actions"], tensors["returns_to_go"],
                   tensors["timesteps"], rows=tensors["rows"])
    actor, critic_loss, metrics = td3_terms(model, critic, critic.make_target(), tensors, hidden, 2.5, 0.99)
    actor.backward(retain_graph=True)
    assert all(p.grad is None for p in critic.parameters())
    assert model.heads["0"].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    critic_loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in critic.parameters())
    assert metrics["loss/critic"] > 0


def test_terminal_steps_do_not_bootstrap():
    # One-step episodes: the TD target is the reward alone, whatever the target critic says.
    rng = np.random.default_rng(0)
    task = TaskInfo("vec", Box((3,)), Box((1,)))
    eps = [Episode("vec", rng.normal(size=(1, 3)).astype(np.float32), np.zeros((1, 1), np.float32),
                   np.array([2.0], np.float32), True) for _ in range(4)]
    model = DecisionTransformer(CFG, [task])
    critic = Critic(model)
    target = critic.make_target()
    for p in target.parameters():
        p.data.fill_(0.1)  # a target critic that would add a large bootstrap
    tensors = batch_to_tensors(make_batch(eps, [0] * 4, 5, [task]), "cpu")
    hidden = model(tensors["task"], tensors["observations"], tensors["actions"], tensors["returns_to_go"],
                   tensors["timesteps"], rows=tensors["rows"])
    _, critic_loss, _ = td3_terms(model, critic, target, tensors, hidden, 1.0, 0.99)
    s = model.obs_encoders["0"].normalize(tensors["observations"][0])
    q = critic(0, s, tensors["actions"][0])[:, :, 0]  # (2, 4)
    assert critic_loss.item() == pytest.approx(((q - 2.0) ** 2).sum(0).mean().item(), rel=1e-5)


def _train(critic_weight, updates=1200):
    rng = np.random.default_rng(0)
    task, eps = _bandit_data(rng)
    lengths = np.array([e.length for e in eps])
    learner = Learner(CFG, [task], LearnerConfig(device="cpu", warmup_updates=10, critic_weight=critic_weight,
                                                 critic_lr=1e-3), seed=0)
    for _ in range(updates):
        idx, starts = sample_windows(lengths, 32, 5, rng)
        metrics = learner.step(make_batch([eps[i] for i in idx], starts, 5, [task]))
    policy = Policy(learner.model, [task], num_slots=1)
    obs = rng.normal(size=(20, 3)).astype(np.float32)
    actions = []
    for o in obs:
        policy.reset(0, 0, target_return=float(np.median([e.ret for e in eps])))
        actions.append(policy.act([0], [o], deterministic=True)[0][0])
    return learner, metrics, np.array(actions)


def test_critic_gradient_moves_the_policy_to_the_better_action():
    _, _, plain = _train(0.0)
    learner, metrics, rl = _train(2.5)
    assert "loss/critic" in metrics and "loss/critic" not in _train(0.0, updates=1)[1]
    # Imitation of uniformly random actions stays near their mean; the critic pulls toward 0.5
    # (against the NLL, which still holds it back a little).
    assert abs(np.mean(plain) - 0.5) > 0.3, np.mean(plain)
    assert abs(np.mean(rl) - 0.5) < 0.2 and np.mean(rl) > np.mean(plain) + 0.2, (np.mean(rl), np.mean(plain))


def test_save_restore_keeps_the_critic(tmp_path):
    rng = np.random.default_rng(0)
    task, eps = _bandit_data(rng, n=8)
    cfg = LearnerConfig(device="cpu", warmup_updates=3, critic_weight=1.0)
    batches = [make_batch([eps[i] for i in idx], starts, 5, [task])
               for idx, starts in (sample_windows(np.array([e.length for e in eps]), 8, 5, rng) for _ in range(4))]
    a = Learner(CFG, [task], cfg, seed=0)
    for b in batches[:3]:
        a.step(b)
    a.save(tmp_path / "ckpt")
    ma = a.step(batches[3])  # before b exists: both draw from the process's torch generator
    b = Learner(CFG, [task], cfg, seed=1)
    b.load(tmp_path / "ckpt")
    mb = b.step(batches[3])
    for key in ("loss/total", "loss/critic", "critic/q"):
        assert ma[key] == mb[key], key
    plain = Learner(CFG, [task], LearnerConfig(device="cpu", warmup_updates=3), seed=0)
    plain.save(tmp_path / "plain")
    with pytest.raises(ValueError, match="has none"):
        Learner(CFG, [task], cfg, seed=0).load(tmp_path / "plain")
