"""A multi-task Decision Transformer with one token per step.

Each step t of a window becomes ONE token,

    token_t = obs_embed(o_t) + prev_action_embed(a_{t-1}) + rtg_embed(R_t)
              + timestep_embed(t) + task_embed(task),

(the timestep term only with `timestep_embedding`; ODT's model has none by default),

and the hidden state at step t predicts a_t. ODT interleaves three tokens per step
(R, o, a); folding them into one makes the sequence 3x shorter and attention 9x
cheaper, while the causal mask still keeps a_t out of the token that predicts it.

Tasks differ in their spaces, so the input adapters and output heads are per task
(one conv encoder is shared by all image tasks); the transformer is shared, and a
batch that mixes tasks goes through it in one pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from frontier.agents.spaces import Box, Discrete, TaskInfo


@dataclass
class ModelConfig:
    """Transformer size and the bounds of the action distribution."""

    embed_dim: int = 128
    """C: token width."""
    n_layers: int = 3
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads per block; must divide embed_dim."""
    context_len: int = 20
    """K: steps (= tokens) per window."""
    max_timestep: int = 4096
    """Size of the timestep embedding table; larger timesteps are clamped to the last entry."""
    timestep_embedding: bool = False
    """Add an embedding of the step's index in its episode to every token. Off, as in ODT: with it,
    a return target beyond the data pairs the return-to-go with timesteps never met at that value
    (benchmarks/results/learning.md, timestep table)."""
    dropout: float = 0.1
    """Dropout on token embeddings and residual branches."""
    log_std_min: float = -5.0
    """Lower bound of the Gaussian head's log std (ODT)."""
    log_std_max: float = 2.0
    """Upper bound of the Gaussian head's log std (ODT)."""
    init_temperature: float = 0.1
    """Initial entropy temperature alpha, per task."""
    return_head: bool = False
    """Add a per-task head that predicts, from an observation alone, a high expectile of the
    return-to-go the data reached from there (`predict_return`): with `train.return_targets:
    state` each episode is conditioned on the prediction for its first observation, a target the
    data holds for that start, instead of one target for every start (Reinformer, Zhuang et al.
    2024; benchmarks/results/stability-notes.md)."""

    def __post_init__(self):
        if self.embed_dim < 1 or self.n_layers < 1 or self.n_heads < 1:
            raise ValueError(f"embed_dim, n_layers, n_heads must be >= 1, got {self.embed_dim}, {self.n_layers}, {self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.embed_dim % self.n_heads != 0:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by n_heads {self.n_heads}")
        if self.context_len < 1 or self.max_timestep < 1:
            raise ValueError(f"context_len and max_timestep must be >= 1, got {self.context_len}, {self.max_timestep}")
        if self.log_std_min >= self.log_std_max:
            raise ValueError(f"log_std_min {self.log_std_min} must be < log_std_max {self.log_std_max}")
        if self.init_temperature <= 0:
            raise ValueError(f"init_temperature must be > 0, got {self.init_temperature}")


# ---------------------------------------------------------------------------------------
# Transformer


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, last: torch.Tensor | int | None = None) -> torch.Tensor:
        """Causal self-attention over x (B, T, C) -> (B, T, C).

        last: compute only one query per row, at position `last` (B,) of it, attending to the
        positions up to it -> (B, C); -1: every row's final position (no gather, no mask). Keys
        and values are still computed for the whole window; nothing else is.
        """
        B, T, C = x.shape
        nh, hs = self.n_heads, C // self.n_heads
        if last is None:
            q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
            q, k, v = (z.view(B, T, nh, hs).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
            # No dropout on attention probabilities: it forces the unfused math kernel (about 25%
            # slower on CPU); the residual and embedding dropout remain.
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
            return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, T, C)))
        W, b = self.qkv.weight, self.qkv.bias  # (3C, C), (3C,): rows are q | k | v
        k, v = F.linear(x, W[C:], b[C:]).split(C, dim=2)  # 2 x (B, T, C)
        k, v = (z.view(B, T, nh, hs).transpose(1, 2) for z in (k, v))  # (B, nh, T, hs)
        if isinstance(last, int):
            if last != -1:
                raise ValueError(f"last must be a (B,) tensor of positions or -1, got {last}")
            x_q, mask = x[:, -1], None  # (B, C)
        else:
            x_q = x[torch.arange(B, device=x.device), last]  # (B, C)
            mask = (torch.arange(T, device=x.device)[None] <= last[:, None])[:, None, None, :]  # (B, 1, 1, T)
        q = F.linear(x_q, W[:C], b[:C]).view(B, nh, 1, hs)  # (B, nh, 1, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, 1, hs)
        return self.resid_dropout(self.proj(y.reshape(B, C)))  # (B, C)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.embed_dim, 4 * cfg.embed_dim)
        self.proj = nn.Linear(4 * cfg.embed_dim, cfg.embed_dim)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm GPT block."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.embed_dim)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, last: torch.Tensor | int | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); with `last` (see CausalSelfAttention), only each row's token
        at that position -> (B, C)."""
        if last is None:
            x = x + self.attn(self.ln_1(x))
        else:
            rows = x[:, -1] if isinstance(last, int) else x[torch.arange(x.shape[0], device=x.device), last]
            x = rows + self.attn(self.ln_1(x), last)  # (B, C)
        return x + self.mlp(self.ln_2(x))


# ---------------------------------------------------------------------------------------
# Input adapters


class VectorEncoder(nn.Module):
    """Normalizes a float vector observation with fixed statistics, then projects it."""

    clip = 10.0  # normalized observations are clipped to [-clip, clip]

    def __init__(self, dim: int, embed_dim: int):
        super().__init__()
        # Buffers, not parameters: set from data by `set_observation_stats`, saved with the model.
        self.register_buffer("obs_mean", torch.zeros(dim))
        self.register_buffer("obs_std", torch.ones(dim))
        self.proj = nn.Linear(dim, embed_dim)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        # Clipped, as in PPO's observation normalization: states the data never showed stay in range.
        return ((obs.float() - self.obs_mean) / self.obs_std).clamp(-self.clip, self.clip)  # (..., D)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.proj(self.normalize(obs))  # (..., C)


class ImageEncoder(nn.Module):
    """A lighter Nature-CNN for uint8 (H, W, C) frames, shared by every image task.

    Padding and the adaptive pool make any frame size work (84x84 Atari frames as well
    as small grids); the output size does not depend on the frame size.
    """

    channels = (16, 32, 32)
    kernels = (8, 4, 3)
    strides = (4, 2, 1)
    paddings = (2, 1, 1)
    pooled = 4  # the final feature map is pooled to pooled x pooled

    def __init__(self, in_channels: int, embed_dim: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c, k, s, p in zip(self.channels, self.kernels, self.strides, self.paddings):
            layers += [nn.Conv2d(c_in, c, k, s, p), nn.ReLU()]
            c_in = c
        self.convs = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(self.pooled), nn.Flatten())
        self.proj = nn.Linear(c_in * self.pooled**2, embed_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0  # (N, C_img, H, W)
        return self.proj(self.convs(x)).reshape(*lead, -1)  # (..., C)

    def conv_flops(self, height: int, width: int) -> int:
        """Forward FLOPs of the conv stack for one frame (2 per multiply-add)."""
        flops, h, w = 0, height, width
        for conv in self.convs:
            if isinstance(conv, nn.Conv2d):
                k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
                h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
                flops += 2 * conv.in_channels * k * k * conv.out_channels * h * w
        return flops


# ---------------------------------------------------------------------------------------
# Action distributions


class SquashedGaussian:
    """Diagonal Gaussian followed by tanh, so samples lie in (-1, 1) (ODT's SquashedNormal)."""

    # Targets are clamped into [-1 + eps, 1 - eps] before atanh. Scripted controllers saturate
    # at exactly +-1; with a tiny eps those targets land at atanh = +-7.25, far outliers in the
    # pre-tanh space that pull the fit toward a wide, uninformative Gaussian.
    target_eps = 1e-2

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.mean = mean  # (N, A)
        self.std = log_std.exp()  # (N, A)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log p(actions), (N,)."""
        return self.log_prob_terms(actions).sum(-1)

    def log_prob_terms(self, actions: torch.Tensor) -> torch.Tensor:
        """Per-dimension terms (N, A) of log p(actions)."""
        a = actions.clamp(-1.0 + self.target_eps, 1.0 - self.target_eps)
        return self._log_prob_terms(torch.atanh(a))

    def weigh(self, terms: torch.Tensor, beta: float) -> torch.Tensor:
        """Sum per-dimension terms (N, A) -> (N,), each weighted by std.detach()^(2 beta) if beta > 0
        (beta-NLL, Seitzer et al. 2022): beta = 1 gives the mean a squared-error gradient, so it
        keeps learning where the predicted std is large."""
        if beta:
            terms = terms * self.std.detach().pow(2.0 * beta)
        return terms.sum(-1)

    def _log_prob_terms(self, u: torch.Tensor) -> torch.Tensor:
        z = (u - self.mean) / self.std
        normal = -0.5 * z.pow(2) - self.std.log() - 0.5 * math.log(2 * math.pi)  # (N, A)
        # log |d tanh(u) / du| = log(1 - tanh(u)^2), in the numerically stable form.
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))  # (N, A)
        return normal - log_det  # (N, A)

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return torch.tanh(self.mean + self.std * noise)  # (N, A)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.rsample(generator).detach()

    def mode(self) -> torch.Tensor:
        return torch.tanh(self.mean)  # (N, A)

    def entropy(self, n_samples: int = 1) -> torch.Tensor:
        """Monte-Carlo estimate -E[log p(a)] with reparameterized samples (ODT); no closed form exists."""
        return self.entropy_terms(n_samples).sum(-1)  # (N,)

    def entropy_terms(self, n_samples: int = 1) -> torch.Tensor:
        """Per-dimension terms (N, A) of the `entropy` estimate."""
        noise = torch.randn((n_samples, *self.mean.shape), device=self.mean.device, dtype=self.mean.dtype)
        u = self.mean + self.std * noise  # (S, N, A)
        # Evaluating the density at the pre-tanh sample avoids the atanh(tanh(u)) round trip.
        return -self._log_prob_terms(u).mean(0)  # (N, A)


class CategoricalHead:
    """Categorical distribution over logits, with generator-driven sampling."""

    def __init__(self, logits: torch.Tensor):
        self.log_probs = F.log_softmax(logits, dim=-1)  # (N, n)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """log p(actions), (N,)."""
        return self.log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # (N,)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.log_probs.exp(), 1, generator=generator).squeeze(-1)  # (N,)

    def mode(self) -> torch.Tensor:
        return self.log_probs.argmax(-1)  # (N,)

    def entropy(self) -> torch.Tensor:
        return -(self.log_probs.exp() * self.log_probs).sum(-1)  # (N,)


# ---------------------------------------------------------------------------------------
# The model


class DecisionTransformer(nn.Module):
    """One transformer for all `tasks`; task i is `tasks[i]` everywhere (batches, heads, temperature)."""

    # What belongs to one task (agents/surgery.py moves it between models by task name): entries
    # of these ModuleDicts, keyed by the task's position, and one row per task of these tensors.
    # Everything else is the shared trunk.
    PER_TASK_MODULES = ("obs_encoders", "action_encoders", "heads", "return_heads")
    PER_TASK_ROWS = ("task_embed.weight", "log_temperature")

    def __init__(self, cfg: ModelConfig, tasks: Sequence[TaskInfo]):
        super().__init__()
        if len(tasks) == 0:
            raise ValueError("DecisionTransformer needs at least one task")
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate task names in {names}")
        self.cfg = cfg
        self.tasks = list(tasks)
        C = cfg.embed_dim

        image_channels = {t.observation.shape[-1] for t in tasks if isinstance(t.observation, Box) and t.observation.is_image}
        if len(image_channels) > 1:
            raise ValueError(f"image tasks must share their channel count to share the encoder, got {sorted(image_channels)}")
        self.image_encoder = ImageEncoder(image_channels.pop(), C) if image_channels else None

        obs_encoders, action_encoders, heads = {}, {}, {}
        for i, t in enumerate(tasks):
            key = str(i)
            if isinstance(t.observation, Discrete):
                obs_encoders[key] = nn.Embedding(t.observation.n, C)
            elif not t.observation.is_image:
                obs_encoders[key] = VectorEncoder(t.observation.dim, C)
            if t.continuous:
                action_encoders[key] = nn.Linear(t.action.dim, C)
                heads[key] = nn.Linear(C, 2 * t.action.dim)  # mean and log std
            else:
                action_encoders[key] = nn.Embedding(t.action.n, C)
                heads[key] = nn.Linear(C, t.action.n)  # logits
        self.obs_encoders = nn.ModuleDict(obs_encoders)
        self.action_encoders = nn.ModuleDict(action_encoders)
        self.heads = nn.ModuleDict(heads)
        # Empty without cfg.return_head, so the state dict is the same as before the option existed.
        self.return_heads = nn.ModuleDict(
            {str(i): nn.Sequential(nn.LayerNorm(C), nn.Linear(C, C), nn.GELU(), nn.Linear(C, 1)) for i in range(len(tasks))}
            if cfg.return_head else {})
        if cfg.return_head:  # the heads predict standardized returns-to-go (set_return_stats), so they fit fast
            self.register_buffer("return_mean", torch.zeros(len(tasks)))
            self.register_buffer("return_std", torch.ones(len(tasks)))
            # The range of the data's returns: a prediction outside it is a target no episode reached.
            self.register_buffer("return_low", torch.full((len(tasks),), -torch.inf))
            self.register_buffer("return_high", torch.full((len(tasks),), torch.inf))
        # Window position 0 has no previous action in the window (the step before it is
        # cut off, or the episode starts): a learned vector stands in, in training and acting alike.
        self.no_action = nn.Parameter(torch.zeros(C))
        self.rtg_embed = nn.Linear(1, C)
        self.timestep_embed = nn.Embedding(cfg.max_timestep, C) if cfg.timestep_embedding else None
        self.task_embed = nn.Embedding(len(tasks), C)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.ln_f = nn.LayerNorm(C)
        # A Parameter, so it is saved and restored with the model.
        self.log_temperature = nn.Parameter(torch.full((len(tasks),), math.log(cfg.init_temperature)))

        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") and name.startswith("blocks."):
                # GPT-2: scale residual projections by depth so the residual stream's variance stays put.
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))
        nn.init.normal_(self.no_action, mean=0.0, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def set_observation_stats(self, task_index: int, mean, std):
        """Set the normalization of a vector-observation task (std is floored at 1e-6)."""
        enc = self.obs_encoders[str(task_index)] if str(task_index) in self.obs_encoders else None
        if not isinstance(enc, VectorEncoder):
            raise ValueError(f"task {task_index} has no vector observation to normalize")
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.shape != enc.obs_mean.shape or std.shape != enc.obs_std.shape:
            raise ValueError(
                f"task {task_index}: stats of shape {tuple(mean.shape)}/{tuple(std.shape)}, "
                f"observation has {tuple(enc.obs_mean.shape)}"
            )
        enc.obs_mean.copy_(mean)
        enc.obs_std.copy_(std.clamp_min(1e-6))

    def set_return_stats(self, task_index: int, mean: float, std: float, low: float, high: float):
        """The task's scaled episode returns in the data the return head learns from: their mean
        and std (it predicts in those units; std floored at 1e-3) and their range (it predicts
        nothing outside)."""
        if not self.cfg.return_head:
            raise ValueError("this model has no return head (model.return_head)")
        if not low <= mean <= high:
            raise ValueError(f"return stats of task {task_index}: mean {mean} outside [{low}, {high}]")
        self.return_mean[task_index] = float(mean)
        self.return_std[task_index] = max(float(std), 1e-3)
        self.return_low[task_index] = float(low)
        self.return_high[task_index] = float(high)

    def embed_observations(self, task_index: int, obs: torch.Tensor) -> torch.Tensor:
        """Observations (B_i, K, ...) of one task -> (B_i, K, C)."""
        space = self.tasks[task_index].observation
        if isinstance(space, Discrete):
            return self.obs_encoders[str(task_index)](obs.long())  # (B_i, K, C)
        if space.is_image:
            return self.image_encoder(obs)  # (B_i, K, C)
        return self.obs_encoders[str(task_index)](obs)  # (B_i, K, C)

    def embed_actions(self, task_index: int, actions: torch.Tensor) -> torch.Tensor:
        """Actions (..., A) or (...) of one task -> (..., C), as the previous action of a token."""
        enc = self.action_encoders[str(task_index)]
        return enc(actions.float() if self.tasks[task_index].continuous else actions.long())

    def _embed_previous_actions(self, task_index: int, actions: torch.Tensor) -> torch.Tensor:
        """Embed a_{t-1} for every position t of the window; position 0 gets `no_action`."""
        emb = self.embed_actions(task_index, actions[:, :-1])  # (B_i, K-1, C)
        first = self.no_action.to(emb.dtype).expand(emb.shape[0], 1, -1)  # (B_i, 1, C)
        return torch.cat([first, emb], dim=1)  # (B_i, K, C)

    def embed_tokens(
        self,
        task: torch.Tensor,
        observations: dict[int, torch.Tensor],
        actions: dict[int, torch.Tensor],
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        rows: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The token of every step (B, K, C): its observation, previous action, return-to-go,
        timestep and task, summed (arguments as `forward`'s)."""
        B, K = returns_to_go.shape
        x = None
        for i in sorted(observations):
            idx = rows[i] if rows is not None else torch.nonzero(task == i).squeeze(1)  # (B_i,)
            emb = self.embed_observations(i, observations[i]) + self._embed_previous_actions(i, actions[i])  # (B_i, K, C)
            assert emb.shape[:2] == (len(idx), K), (emb.shape, len(idx), K)
            if x is None:
                # The residual stream stays float32 under autocast; layers cast their own inputs.
                x = emb.new_zeros(B, K, emb.shape[-1], dtype=torch.float32)  # (B, K, C)
            x = x.index_copy(0, idx, emb.to(x.dtype))  # out of place: keeps autograd simple
        return x + self.condition_embedding(returns_to_go, timesteps, task[:, None])  # (B, K, C)

    def forward(
        self,
        task: torch.Tensor,
        observations: dict[int, torch.Tensor],
        actions: dict[int, torch.Tensor],
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        rows: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Hidden states (B, K, C); hidden[b, t] depends on steps <= t of row b only.

        task: (B,) long. observations/actions: task index -> rows of that task, in row
        order. returns_to_go: (B, K) scaled. timesteps: (B, K) long. rows: optional task
        index -> (B_i,) row indices (saves a device sync per task when given).
        """
        B, K = returns_to_go.shape
        if K > self.cfg.context_len:
            raise ValueError(f"window of {K} steps exceeds context_len {self.cfg.context_len}")
        if not observations:
            raise ValueError("forward needs at least one task's rows")
        if set(observations) != set(actions):
            raise ValueError(f"observations for tasks {sorted(observations)} but actions for {sorted(actions)}")
        n_rows = sum(o.shape[0] for o in observations.values())
        if n_rows != B:
            raise ValueError(f"per-task observations hold {n_rows} rows, the batch has {B}")
        x = self.drop(self.embed_tokens(task, observations, actions, returns_to_go, timesteps, rows))
        return self.transform(x)

    def transform(self, x: torch.Tensor, last: torch.Tensor | int | None = None) -> torch.Tensor:
        """Tokens (B, K, C) through the blocks and the final norm -> hidden states (B, K, C);
        with `last` ((B,) positions, or -1 for the final one), only each row's hidden state there
        -> (B, C): the last block computes nothing else (acting needs only the newest step's)."""
        for block in self.blocks[:-1]:
            x = block(x)
        return self.ln_f(self.blocks[-1](x, last))

    def condition_embedding(self, returns_to_go: torch.Tensor, timesteps: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """What every token adds besides its observation and previous action: the scaled
        return-to-go (...), the timestep (...) and the task index (broadcastable to them) -> (..., C)."""
        x = self.rtg_embed(returns_to_go.unsqueeze(-1).float()) + self.task_embed(task)
        if self.timestep_embed is not None:
            x = x + self.timestep_embed(timesteps.clamp(0, self.cfg.max_timestep - 1))
        return x

    def action_distribution(self, task_index: int, hidden: torch.Tensor) -> SquashedGaussian | CategoricalHead:
        """The distribution of a_t given hidden (N, C) at step t, for task `task_index`."""
        out = self.heads[str(task_index)](hidden).float()  # distributions in float32 even under bf16 autocast
        if not self.tasks[task_index].continuous:
            return CategoricalHead(out)
        mean, log_std = out.chunk(2, dim=-1)  # (N, A) each
        # Squash log std smoothly into [min, max] rather than clamping it (ODT), so it keeps a gradient.
        lo, hi = self.cfg.log_std_min, self.cfg.log_std_max
        log_std = lo + 0.5 * (hi - lo) * (torch.tanh(log_std) + 1.0)
        return SquashedGaussian(mean, log_std)

    def predict_return(self, task_index: int, obs: torch.Tensor) -> torch.Tensor:
        """Observations (B_i, K, ...) of one task -> (B_i, K) the return head's scaled return-to-go
        from each, within the data's range of returns (set_return_stats). It reads the observation embedding detached, so fitting it leaves the policy's
        gradients as they are."""
        emb = self.embed_observations(task_index, obs).detach()  # (B_i, K, C)
        z = self.return_heads[str(task_index)](emb).squeeze(-1).float()  # (B_i, K) standardized
        i = task_index
        return (self.return_mean[i] + self.return_std[i] * z).clamp(self.return_low[i], self.return_high[i])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, task_index: int | None = None) -> float:
        """Forward FLOPs for one token: 2 per multiply-add of the dense layers a token of
        that task passes through (embedding lookups are free), its conv encoder if any,
        and the attention term 2 * n_layers * K * C (scores and weighted sum, Kaplan et al.).
        Without a task, the most expensive task is counted.
        """
        if task_index is None:
            return max(self.flops_per_token(i) for i in range(len(self.tasks)))
        cfg, task = self.cfg, self.tasks[task_index]
        dense = sum(p.numel() for p in self.blocks.parameters()) + sum(p.numel() for p in self.rtg_embed.parameters())
        key = str(task_index)
        dense += sum(p.numel() for p in self.heads[key].parameters())
        if key in self.return_heads:
            dense += sum(p.numel() for p in self.return_heads[key].parameters())
        if task.continuous:
            dense += sum(p.numel() for p in self.action_encoders[key].parameters())
        flops = 2.0 * dense + 2.0 * cfg.n_layers * cfg.context_len * cfg.embed_dim
        obs = task.observation
        if isinstance(obs, Box) and obs.is_image:
            flops += self.image_encoder.conv_flops(obs.shape[0], obs.shape[1])
            flops += 2.0 * sum(p.numel() for p in self.image_encoder.proj.parameters())
        elif isinstance(obs, Box):
            flops += 2.0 * sum(p.numel() for p in self.obs_encoders[key].parameters())
        return flops


def batch_to_tensors(batch, device: torch.device | str, pin_memory: bool | None = None) -> dict:
    """Move a `Batch` to `device` as the dict `odt_loss` and `DecisionTransformer.forward` take.

    On CUDA the host arrays are pinned and copied asynchronously, so the copy overlaps
    with whatever the device is still doing. On CPU the tensors share memory with the batch.
    """
    device = torch.device(device)
    pin = device.type == "cuda" if pin_memory is None else pin_memory

    def move(a) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        if pin and not t.is_pinned():  # arrays the caller already pinned are not copied again
            t = t.pin_memory()
        return t.to(device, non_blocking=pin)

    return {
        "task": move(batch.task),
        "observations": {i: move(o) for i, o in batch.observations.items()},
        "actions": {i: move(a) for i, a in batch.actions.items()},
        "returns_to_go": move(batch.returns_to_go),
        "rewards": move(batch.rewards),
        "terminals": move(batch.terminals),
        "timesteps": move(batch.timesteps),
        "mask": move(batch.mask),
        "rows": {i: move(batch.rows(i)) for i in batch.observations},
    }
