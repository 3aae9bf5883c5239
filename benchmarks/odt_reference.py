"""A re-implementation of the ODT reference training step (facebookresearch/online-dt), for timing.

The reference is not installed here, so this module redoes the compute of one of its updates,
written from its published source, operation for operation where it costs time:

- three tokens per step (return-to-go, state, action), each embedded by its own linear layer,
  stacked to (B, 3K, C) and layer-normalized; no positional embedding (its default `ordering=0`);
- its GPT-2 (Hugging Face's GPT2Model with the position table removed): Conv1D projections
  (addmm), unfused attention with a (n_positions x n_positions) uint8 causal-mask buffer,
  torch.where against -1e4, an additive padding mask, softmax, attention dropout, ReLU MLP
  (its `activation_function` default), residual and embedding dropout, final LayerNorm;
- its state and return heads (computed on every forward although the loss ignores them) and its
  stochastic actor: a diagonal Gaussian squashed by tanh through `torch.distributions`
  (TransformedDistribution with a cached TanhTransform, argument validation on), entropy as a
  one-sample Monte-Carlo estimate, log-likelihood of the stored actions;
- the loss -(mean log-likelihood of real steps + alpha.detach() * mean entropy), backward,
  gradient clipping at 0.25, a LAMB step (per-tensor loop, no bias correction, trust ratio
  ||w|| / ||adam step||), a second backward for the temperature loss and an Adam step on the
  log temperature, the warmup schedule, three `.item()` reads;
- its batch construction (`TransformSamplingSubTraj` + default collate): per sample, a Python
  loop for the returns-to-go over the rest of the episode, numpy padding and normalization,
  eight tensors per sample stacked by the collate. The reference runs this in DataLoader worker
  processes, beside the updates; `reference_batch` times it on its own.

It is a re-implementation, not the reference's code: figures from it stand for the reference
only as far as the cross-check against the reference's own timings (issue 6) holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import distributions as pyd


@dataclass
class ReferenceConfig:
    """The reference's model and optimizer settings (its main.py defaults unless named)."""

    state_dim: int = 11  # hopper
    act_dim: int = 3  # hopper
    embed_dim: int = 512  # --embed_dim
    n_layers: int = 4  # --n_layer
    n_heads: int = 4  # --n_head
    context_len: int = 20  # --K
    dropout: float = 0.1  # --dropout: residual, attention and embedding dropout alike
    n_positions: int = 1024  # size of GPT-2's causal-mask buffer (main.py passes 1024)
    max_ep_len: int = 1000  # MAX_EPISODE_LEN: timestep cap
    lr: float = 1e-4  # --learning_rate
    weight_decay: float = 5e-4  # --weight_decay
    warmup_updates: int = 10000  # --warmup_steps
    init_temperature: float = 0.1  # --init_temperature
    reward_scale: float = 0.001  # 0.001 for MuJoCo tasks


class _Conv1D(nn.Module):
    """GPT-2's 'Conv1D': a linear layer with a transposed weight, applied through addmm."""

    def __init__(self, n_out: int, n_in: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class _Attention(nn.Module):
    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        C = cfg.embed_dim
        self.n_heads = cfg.n_heads
        self.register_buffer("mask", torch.tril(torch.ones(cfg.n_positions, cfg.n_positions, dtype=torch.uint8))[None, None])
        self.register_buffer("masked_value", torch.tensor(-1e4))
        self.c_attn = _Conv1D(3 * C, C)
        self.c_proj = _Conv1D(C, C)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_heads
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_heads, hs).permute(0, 2, 1, 3)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, hs).permute(0, 2, 3, 1)  # (B, nh, hs, T)
        v = v.view(B, T, self.n_heads, hs).permute(0, 2, 1, 3)  # (B, nh, T, hs)
        w = torch.matmul(q, k) / math.sqrt(hs)  # (B, nh, T, T)
        causal = self.mask[:, :, :T, :T]
        w = torch.where(causal.bool(), w, self.masked_value.to(w.dtype))
        w = w + padding  # (B, 1, 1, T) additive: -1e4 on padding
        w = self.attn_dropout(F.softmax(w, dim=-1))
        y = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class _Block(nn.Module):
    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        C = cfg.embed_dim
        self.ln_1 = nn.LayerNorm(C)
        self.attn = _Attention(cfg)
        self.ln_2 = nn.LayerNorm(C)
        self.c_fc = _Conv1D(4 * C, C)
        self.c_proj = _Conv1D(C, 4 * C)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), padding)
        return x + self.dropout(self.c_proj(F.relu(self.c_fc(self.ln_2(x)))))


class ReferenceModel(nn.Module):
    """The reference's DecisionTransformer with its stochastic actor (three tokens per step)."""

    def __init__(self, cfg: ReferenceConfig):
        super().__init__()
        C = cfg.embed_dim
        self.cfg = cfg
        self.embed_timestep = nn.Embedding(cfg.max_ep_len, C)  # built but unused with ordering=0
        self.embed_return = nn.Linear(1, C)
        self.embed_state = nn.Linear(cfg.state_dim, C)
        self.embed_action = nn.Linear(cfg.act_dim, C)
        self.embed_ln = nn.LayerNorm(C)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([_Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(C)
        self.predict_state = nn.Linear(C, cfg.state_dim)
        self.predict_return = nn.Linear(C, 1)
        self.mu = nn.Linear(C, cfg.act_dim)
        self.log_std = nn.Linear(C, cfg.act_dim)
        # A bare tensor, as in the reference (not a Parameter).
        self.log_temperature = torch.tensor(math.log(cfg.init_temperature), requires_grad=True)

    def forward(self, states, actions, rtg, padding_mask):
        B, K = states.shape[:2]
        C = self.cfg.embed_dim
        r, s, a = self.embed_return(rtg), self.embed_state(states), self.embed_action(actions)  # (B, K, C) each
        x = torch.stack((r, s, a), dim=1).permute(0, 2, 1, 3).reshape(B, 3 * K, C)  # (B, 3K, C)
        x = self.embed_ln(x)
        mask = torch.stack((padding_mask,) * 3, dim=1).permute(0, 2, 1).reshape(B, 3 * K)  # (B, 3K)
        padding = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0  # (B, 1, 1, 3K)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, padding)
        x = self.ln_f(x).reshape(B, K, 3, C).permute(0, 2, 1, 3)  # (B, 3, K, C)
        self.predict_return(x[:, 2])
        self.predict_state(x[:, 2])
        h = x[:, 1]  # state tokens predict actions
        lo, hi = -5.0, 2.0
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(self.log_std(h)) + 1.0)
        base = pyd.Normal(self.mu(h), log_std.exp())
        return pyd.TransformedDistribution(base, [pyd.transforms.TanhTransform(cache_size=1)])


class _Lamb(torch.optim.Optimizer):
    """LAMB as the reference uses it: Adam moments without bias correction, update scaled per
    tensor by ||w|| / ||adam step + wd * w||, one tensor at a time."""

    def __init__(self, params, lr: float, weight_decay: float, eps: float = 1e-8, betas=(0.9, 0.999)):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, eps=eps, betas=betas))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                step = m / v.sqrt().add(group["eps"])
                if group["weight_decay"]:
                    step.add_(p, alpha=group["weight_decay"])
                w_norm = p.pow(2).sum().sqrt()
                s_norm = step.pow(2).sum().sqrt()
                trust = 1.0 if w_norm == 0 or s_norm == 0 else w_norm / s_norm
                p.add_(step * (-group["lr"] * trust))


class ReferenceTrainer:
    """One reference update per `step(batch)`; batches come from `reference_batch`."""

    def __init__(self, cfg: ReferenceConfig, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.model = ReferenceModel(cfg)
        self.optimizer = _Lamb(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda u: min((u + 1) / cfg.warmup_updates, 1))
        self.temperature_optimizer = torch.optim.Adam([self.model.log_temperature], lr=1e-4, betas=(0.9, 0.999))
        self.target_entropy = -cfg.act_dim

    def step(self, batch: tuple) -> tuple[float, float, float]:
        states, actions, rtg, timesteps, mask = batch
        self.model.train()
        dist = self.model(states, actions, rtg[:, :-1], mask)
        log_likelihood = dist.log_prob(actions.clone()).sum(2)[mask > 0].mean()
        x = dist.rsample((1,))
        entropy = (-dist.log_prob(x).mean(0).sum(2)).mean()
        temperature = self.model.log_temperature.exp()
        loss = -(log_likelihood + temperature.detach() * entropy)
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 0.25)
        self.optimizer.step()
        self.temperature_optimizer.zero_grad()
        (self.model.log_temperature.exp() * (entropy - self.target_entropy).detach()).backward()
        self.temperature_optimizer.step()
        self.scheduler.step()
        return loss.item(), -log_likelihood.item(), entropy.item()


def _returns_to_go(rewards: np.ndarray) -> np.ndarray:
    # The reference's discount_cumsum with gamma 1: a Python loop from the episode's end.
    out = np.zeros_like(rewards)
    out[-1] = rewards[-1]
    for t in reversed(range(len(rewards) - 1)):
        out[t] = rewards[t] + out[t + 1]
    return out


def reference_batch(trajectories: list[dict], batch_size: int, cfg: ReferenceConfig, rng: np.random.Generator,
                    state_mean: np.ndarray, state_std: np.ndarray) -> tuple:
    """Build one batch as the reference's data pipeline does: trajectories drawn with probability
    proportional to length, then one sub-trajectory per sample built in Python and collated."""
    K, sd, ad = cfg.context_len, cfg.state_dim, cfg.act_dim
    lengths = np.array([len(t["observations"]) for t in trajectories])
    chosen = rng.choice(len(trajectories), size=batch_size, p=lengths / lengths.sum())
    samples = []
    for j in chosen:
        traj = trajectories[j]
        si = int(rng.integers(0, len(traj["rewards"])))
        ss = traj["observations"][si:si + K].reshape(-1, sd)
        aa = traj["actions"][si:si + K].reshape(-1, ad)
        rr = traj["rewards"][si:si + K].reshape(-1, 1)
        dd = traj["terminals"][si:si + K]
        tlen = ss.shape[0]
        timesteps = np.minimum(np.arange(si, si + tlen), cfg.max_ep_len - 1)
        rtg = _returns_to_go(traj["rewards"][si:])[: tlen + 1].reshape(-1, 1)
        if rtg.shape[0] <= tlen:
            rtg = np.concatenate([rtg, np.zeros((1, 1))])
        pad = K - tlen
        ss = (np.concatenate([np.zeros((pad, sd)), ss]) - state_mean) / state_std
        aa = np.concatenate([np.zeros((pad, ad)), aa])
        rr = np.concatenate([np.zeros((pad, 1)), rr])
        dd = np.concatenate([np.ones(pad) * 2, dd])
        rtg = np.concatenate([np.zeros((pad, 1)), rtg]) * cfg.reward_scale
        timesteps = np.concatenate([np.zeros(pad), timesteps])
        ordering = np.concatenate([np.zeros(pad), np.arange(tlen)])
        mask = np.concatenate([np.zeros(pad), np.ones(tlen)])
        samples.append((
            torch.from_numpy(ss).float(), torch.from_numpy(aa).float().clamp(-1 + 1e-6, 1 - 1e-6),
            torch.from_numpy(rr).float(), torch.from_numpy(dd).long(), torch.from_numpy(rtg).float(),
            torch.from_numpy(timesteps).long(), torch.from_numpy(ordering).long(), torch.from_numpy(mask),
        ))
    ss, aa, _, _, rtg, timesteps, _, mask = (torch.stack(x) for x in zip(*samples))  # default collate
    return ss, aa, rtg, timesteps, mask


def synthetic_trajectories(n_steps: int, cfg: ReferenceConfig, rng: np.random.Generator, max_len: int = 1000) -> list[dict]:
    """Hopper-shaped episodes (lengths up to `max_len`) totalling about `n_steps` steps."""
    out, total = [], 0
    while total < n_steps:
        T = int(rng.integers(max_len // 4, max_len + 1))
        out.append({
            "observations": rng.standard_normal((T, cfg.state_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (T, cfg.act_dim)).astype(np.float32),
            "rewards": rng.uniform(0, 3, T).astype(np.float32),
            "terminals": np.zeros(T, dtype=bool),
        })
        total += T
    return out
