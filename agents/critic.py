"""The RL-gradient option: per-task twin Q critics over (observation, action), trained by TD3 on
the learner's replay windows, whose gradient is added to the transformer's loss (ODT with TD3
gradients, Yan et al., NeurIPS 2024: return-conditioned imitation alone stalls on low-return data;
a critic tells the policy which way is better even where no stored episode is).

For task i (continuous actions, vector observations) and each real step t of a window that has
its successor in the window or ends its episode in a terminal state:

    critic: sum_j (Q_j(s_t, a_t) - y_t)^2,
            y_t = r_t + discount * (1 - terminal_t) * min_j Q'_j(s_{t+1}, clip(pi_{t+1} + noise))
    actor:  -weight * Q_1(s_t, pi_t) / mean|Q_1(s, pi)|         (TD3+BC's scale-free weighting)

where pi_t = tanh(mean) of the model's action distribution at step t, Q' is the Polyak average of
Q, r_t is scaled by the task's reward_scale, and s_t is the observation as the model normalizes
it. The actor term's gradient reaches only the model; the critic term's only the critics.
Other tasks (discrete actions, images) get no critic and no actor term.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torch.func import functional_call

from frontier.agents.model import DecisionTransformer, VectorEncoder

HIDDEN = 256  # width of each Q network's two hidden layers (TD3's)
TARGET_NOISE = 0.2  # std of the target policy smoothing noise, in action units of [-1, 1] (TD3)
TARGET_NOISE_CLIP = 0.5  # the smoothing noise is clipped to +-this (TD3)
TAU = 0.005  # Polyak step of the target critics per update (TD3)


def _q_net(in_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1))


class Critic(nn.Module):
    """Twin Q networks per supported task of `model`, keyed by the task's position."""

    def __init__(self, model: DecisionTransformer):
        super().__init__()
        nets = {}
        for i, t in enumerate(model.tasks):
            if t.continuous and isinstance(model.obs_encoders[str(i)] if str(i) in model.obs_encoders else None, VectorEncoder):
                nets[str(i)] = nn.ModuleList([_q_net(t.observation.dim + t.action.dim) for _ in range(2)])
        if not nets:
            raise ValueError("the critic needs a task with continuous actions and vector observations")
        self.q = nn.ModuleDict(nets)

    def supports(self, task_index: int) -> bool:
        return str(task_index) in self.q

    def forward(self, task_index: int, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)  # (..., D + A)
        return torch.stack([q(x).squeeze(-1) for q in self.q[str(task_index)]])  # (2, ...)

    def q1_frozen(self, task_index: int, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q_1 with its parameters detached: gradients flow to `action` (and on to the policy) only."""
        net = self.q[str(task_index)][0]
        params = {k: v.detach() for k, v in net.named_parameters()}
        return functional_call(net, params, (torch.cat([obs, action], dim=-1),)).squeeze(-1)  # (...)

    def flops_per_step(self, task_index: int) -> float:
        """Training FLOPs per real step of the task: both Qs forward and backward (6 per weight),
        the target's forward (2) and Q_1 forward and backward for the actor term (3 per weight of both)."""
        if not self.supports(task_index):
            return 0.0
        weights = sum(p.numel() for p in self.q[str(task_index)].parameters() if p.dim() == 2)
        return 11.0 * weights

    def make_target(self) -> "Critic":
        target = copy.deepcopy(self)
        target.requires_grad_(False)
        return target

    @torch.no_grad()
    def update_target(self, target: "Critic") -> None:
        for p, tp in zip(self.parameters(), target.parameters()):
            tp.lerp_(p, TAU)


def td3_terms(model: DecisionTransformer, critic: Critic, target: Critic, tensors: dict, hidden: torch.Tensor,
              weight: float, discount: float) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(actor term, critic loss, metrics) for one batch; `hidden` (B, K, C) is the model's output
    on `tensors` (what `batch_to_tensors` returns). The actor term is summed over real steps and
    divided by the batch's real steps, like the ODT policy loss it is added to."""
    mask_all = tensors["mask"].float()  # (B, K)
    n_total = mask_all.sum().clamp_min(1.0)
    actor = hidden.new_zeros((), dtype=torch.float32)
    critic_sum = hidden.new_zeros((), dtype=torch.float32)
    n_transitions = hidden.new_zeros((), dtype=torch.float32)
    q_sum = hidden.new_zeros((), dtype=torch.float32)
    n_steps = hidden.new_zeros((), dtype=torch.float32)
    rows = tensors["rows"]
    for i in sorted(tensors["observations"]):
        if not critic.supports(i):
            continue
        idx = rows[i]  # (B_i,)
        h = hidden.index_select(0, idx).float()  # (B_i, K, C)
        B_i, K, C = h.shape
        pi = model.action_distribution(i, h.reshape(-1, C)).mode().reshape(B_i, K, -1)  # (B_i, K, A)
        s = model.obs_encoders[str(i)].normalize(tensors["observations"][i])  # (B_i, K, D)
        a = tensors["actions"][i].float()  # (B_i, K, A)
        m = mask_all.index_select(0, idx)  # (B_i, K)
        r = tensors["rewards"].index_select(0, idx).float()  # (B_i, K)
        done = tensors["terminals"].index_select(0, idx).float()  # (B_i, K)
        # Step t's successor is step t + 1 of the same window; the last position has none.
        m_next = torch.cat([m[:, 1:], torch.zeros_like(m[:, :1])], dim=1)  # (B_i, K)
        valid = m * torch.clamp(m_next + done, max=1.0)  # (B_i, K) steps with a TD target
        with torch.no_grad():
            s_next = torch.cat([s[:, 1:], s[:, -1:]], dim=1)  # (B_i, K, D); the filler at K-1 is masked
            a_next = torch.cat([pi[:, 1:], pi[:, -1:]], dim=1)
            noise = (torch.randn_like(a_next) * TARGET_NOISE).clamp(-TARGET_NOISE_CLIP, TARGET_NOISE_CLIP)
            q_next = target(i, s_next, (a_next + noise).clamp(-1.0, 1.0)).min(0).values  # (B_i, K)
            y = r + discount * (1.0 - done) * q_next  # (B_i, K)
        q = critic(i, s, a)  # (2, B_i, K)
        critic_sum = critic_sum + (((q - y) ** 2).sum(0) * valid).sum()
        n_transitions = n_transitions + valid.sum()
        q_pi = critic.q1_frozen(i, s, pi)  # (B_i, K)
        n = m.sum().clamp_min(1.0)
        scale = weight / ((q_pi.abs() * m).sum() / n).detach().clamp_min(1e-6)
        actor = actor - scale * (q_pi * m).sum()
        q_sum = q_sum + (q_pi.detach() * m).sum()
        n_steps = n_steps + m.sum()
    critic_loss = critic_sum / n_transitions.clamp_min(1.0)
    actor = actor / n_total
    values = torch.stack([critic_loss.detach(), actor.detach(), q_sum / n_steps.clamp_min(1.0)]).tolist()
    return actor, critic_loss, {"loss/critic": values[0], "loss/actor_q": values[1], "critic/q": values[2]}
