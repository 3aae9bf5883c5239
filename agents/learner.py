"""The learner: owns the model and its optimizers, and turns batches into updates.

Usage:
    learner = Learner(ModelConfig(), tasks, LearnerConfig(), seed=0)
    metrics = learner.step(batch)          # one update
    publish(learner.weights())             # CPU state dict for the actors
    learner.save(run_dir / "checkpoints" / "latest")
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import safetensors.torch
import torch

from frontier.agents.critic import Critic, td3_terms
from frontier.agents.loss import action_metrics, odt_loss, return_expectile_loss
from frontier.agents.model import DecisionTransformer, ModelConfig, batch_to_tensors
from frontier.agents.spaces import TaskInfo
from frontier.agents.trajectory import Batch

MODEL_FILE = "model.safetensors"
LR_SCHEDULES = ("constant", "cosine")
STATE_FILE = "learner_state.pt"


@dataclass
class LearnerConfig:
    """Optimization settings."""

    lr: float = 3e-4
    """AdamW peak learning rate of the model."""
    weight_decay: float = 5e-4
    """AdamW weight decay, applied to weight matrices and embeddings only."""
    warmup_updates: int = 500
    """Updates of linear learning-rate warmup from lr/warmup_updates to lr."""
    lr_schedule: str = "constant"
    """After warm-up: "constant" (ODT's), or "cosine": down to `lr * lr_floor` at update
    `decay_updates` along a half cosine, then held there (the settled rate of online fine-tuning)."""
    lr_floor: float = 0.1
    """With the cosine schedule: the share of `lr` it ends at and keeps."""
    decay_updates: int = 0
    """With the cosine schedule: the update at which the decay ends (0: the end of the run's
    offline phase, `train.pretrain_updates`; a learner built outside a run keeps `lr`)."""
    grad_clip: float = 0.25
    """Max global gradient norm of the model parameters."""
    temperature_lr: float = 3e-3
    """Adam learning rate of the per-task log temperature. ODT's 1e-4 cannot lift a
    near-deterministic fit's entropy to its target (tests/agents/test_learner.py)."""
    nll_beta: float = 1.0
    """beta of beta-NLL for continuous actions (0: ODT's plain NLL). With plain NLL the squashed
    Gaussian can settle on a wide, mean-zero fit of saturating (bang-bang) expert actions; 1 gives
    the mean a squared-error gradient."""
    return_expectile: float = 0.9
    """Expectile the model's return head fits (model.return_head; agents/loss.py): 0.5 is the mean
    return-to-go reached from an observation, values toward 1 the best."""
    critic_weight: float = 0.0
    """Weight of the critic's actor term (agents/critic.py: ODT with TD3 gradients), relative to
    the NLL; 0 trains no critic. For data whose returns are too low for return-conditioned
    imitation to find better actions; TD3+BC weighs its Q term 2.5 against a squared error."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    discount: float = 0.99
    """The critics' discount factor."""
    device: str = "auto"
    """Device: "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", ..."""
    bf16: bool = True
    """bf16 autocast for forward and loss; used on CUDA only."""
    compile: bool = False
    """torch.compile the model's forward."""
    ema_decay: float = 0.0
    """Decay per update of an exponential moving average of the model's parameters (0: none). The
    average is the policy: the actors act with it, evaluations score it and model.safetensors holds
    it; training goes on with the raw parameters. It smooths the update-to-update noise a
    closed-loop policy is sensitive to (benchmarks/results/stability-notes.md)."""

    def __post_init__(self):
        if self.lr <= 0 or self.temperature_lr <= 0:
            raise ValueError(f"learning rates must be > 0, got lr={self.lr}, temperature_lr={self.temperature_lr}")
        if self.warmup_updates < 0:
            raise ValueError(f"warmup_updates must be >= 0, got {self.warmup_updates}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if not 0 < self.lr_floor <= 1 or self.decay_updates < 0:
            raise ValueError(f"lr_floor must be in (0, 1] and decay_updates >= 0, got {self.lr_floor}, {self.decay_updates}")
        if self.nll_beta < 0:
            raise ValueError(f"nll_beta must be >= 0, got {self.nll_beta}")
        if self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.critic_weight < 0 or self.critic_lr <= 0:
            raise ValueError(f"critic_weight must be >= 0 and critic_lr > 0, got {self.critic_weight}, {self.critic_lr}")
        if not 0 <= self.discount < 1:
            raise ValueError(f"discount must be in [0, 1), got {self.discount}")
        if not 0 < self.return_expectile < 1:
            raise ValueError(f"return_expectile must be in (0, 1), got {self.return_expectile}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


def lr_factor(cfg: LearnerConfig, update: int) -> float:
    """The learning rate of update `update` (0-based) as a share of `cfg.lr`."""
    warmup = max(cfg.warmup_updates, 1)
    if update < warmup:
        return (update + 1) / warmup
    if cfg.lr_schedule == "constant" or not cfg.decay_updates:
        return 1.0
    span = cfg.decay_updates - warmup
    progress = min(1.0, (update - warmup) / span) if span > 0 else 1.0
    return cfg.lr_floor + (1.0 - cfg.lr_floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class _Lap:
    """Adds the seconds since the previous lap to `timings[name]`; does nothing without `timings`."""

    def __init__(self, timings: dict[str, float] | None, device: torch.device):
        self.timings = timings
        self.sync = device.type == "cuda"
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is None:
            return
        if self.sync:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else as torch spells it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown learner device {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"learner device {device!r} requested but CUDA is not available")
    return dev


class Learner:
    """Updates a `DecisionTransformer` with the ODT loss on batches of any mix of `tasks`."""

    def __init__(self, model_cfg: ModelConfig, tasks: Sequence[TaskInfo], cfg: LearnerConfig, seed: int):
        self.cfg = cfg
        self.tasks = list(tasks)
        self.device = resolve_device(cfg.device)
        torch.manual_seed(seed)  # model init, dropout and entropy samples draw from the global torch generator
        self.model = DecisionTransformer(model_cfg, tasks).to(self.device)
        self._forward_model = torch.compile(self.model) if cfg.compile else self.model
        self.updates = 0

        # nanoGPT: decay matrices and embeddings, not biases, LayerNorm gains or the temperature.
        decay, no_decay, self._return_params = [], [], []
        for name, p in self.model.named_parameters():
            if name == "log_temperature":
                continue
            (decay if p.dim() >= 2 else no_decay).append(p)
            if name.startswith("return_heads."):  # clipped on their own: their loss must not scale the policy's step
                self._return_params.append(p)
        # The fused kernel updates all tensors in one pass, on CPU as on CUDA (about 4x faster
        # than the per-tensor loop on CPU; results agree to float32 rounding).
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            fused=True,
        )
        returns = {id(p) for p in self._return_params}
        self._model_params = [p for p in decay + no_decay if id(p) not in returns]
        self._ema: list[torch.Tensor] | None = None  # the parameters' moving average (cfg.ema_decay), once trained
        self.temperature_optimizer = torch.optim.Adam([self.model.log_temperature], lr=cfg.temperature_lr, betas=(0.9, 0.999))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda u: lr_factor(cfg, u))
        self._flops_per_token = torch.tensor([self.model.flops_per_token(i) for i in range(len(tasks))], dtype=torch.float64)
        self.critic = self.target_critic = self.critic_optimizer = None
        if cfg.critic_weight > 0:
            self.critic = Critic(self.model).to(self.device)
            self.target_critic = self.critic.make_target()
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        # Training FLOPs per real step beyond the model's 3x forward: the critics'.
        self._extra_flops_per_step = np.array([self.critic.flops_per_step(i) if self.critic else 0.0
                                               for i in range(len(tasks))])

    def step(self, batch: Batch, tensors: dict | None = None, timings: dict[str, float] | None = None) -> dict[str, float]:
        """One update on `batch`; returns loss metrics and learner/{grad_norm, lr, update_s, flops}.

        `tensors`, when given, is `batch_to_tensors(batch, learner.device)` done ahead of
        time (e.g. by a prefetching thread), so the copy is off the update's critical path.
        `timings`, when given, receives the seconds of each phase (copy, forward, backward,
        optimizer); on CUDA each phase then ends with a synchronize, so only benchmarks ask.
        """
        start = time.perf_counter()
        lap = _Lap(timings, self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        if tensors is None:
            tensors = batch_to_tensors(batch, self.device)
        lap("copy")
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16 and self.device.type == "cuda"):
            hidden = self._forward_model(
                tensors["task"], tensors["observations"], tensors["actions"], tensors["returns_to_go"],
                tensors["timesteps"], rows=tensors.get("rows"),
            )  # (B, K, C)
            loss, temperature_loss, metrics = odt_loss(self.model, tensors, self.cfg.nll_beta, hidden)
            if len(self.model.return_heads):
                return_loss, metrics["loss/return_expectile"] = return_expectile_loss(
                    self.model, tensors, self.cfg.return_expectile)
                loss = loss + return_loss
            critic_loss = 0.0
            if self.critic is not None:
                actor, critic_loss, critic_metrics = td3_terms(
                    self.model, self.critic, self.target_critic, tensors, hidden, self.cfg.critic_weight, self.cfg.discount)
                loss = loss + actor
                metrics.update(critic_metrics)
        lap("forward")
        # Before any weight changes, so the model stays usable: every term that reaches a gradient.
        terms = ("loss/total", "loss/critic", "loss/actor_q", "loss/return_expectile", "loss/temperature")
        bad = [k for k in terms if k in metrics and not np.isfinite(metrics[k])]
        if bad:
            raise FloatingPointError(f"non-finite loss at update {self.updates + 1} ({', '.join(bad)}): the batch "
                                     "holds non-finite observations, actions or returns")
        self.optimizer.zero_grad(set_to_none=True)
        self.temperature_optimizer.zero_grad(set_to_none=True)
        if self.critic_optimizer is not None:
            self.critic_optimizer.zero_grad(set_to_none=True)
        # The losses touch disjoint parameters (see odt_loss and td3_terms), so one backward serves all.
        (loss + temperature_loss + critic_loss).backward()
        lap("backward")
        grad_norm = torch.nn.utils.clip_grad_norm_(self._model_params, self.cfg.grad_clip)
        if self._return_params:
            torch.nn.utils.clip_grad_norm_(self._return_params, self.cfg.grad_clip)
        self.optimizer.step()
        self.temperature_optimizer.step()
        if self.critic is not None:
            self.critic_optimizer.step()
            self.critic.update_target(self.target_critic)
        self.scheduler.step()
        self._update_ema()
        lap("optimizer")
        self.updates += 1
        metrics["learner/grad_norm"] = float(grad_norm)  # syncs, so update_s covers the device work
        metrics["learner/lr"] = lr
        metrics["learner/update_s"] = time.perf_counter() - start
        real_tokens = np.bincount(batch.task, weights=batch.mask.sum(1), minlength=len(self.tasks))  # (n_tasks,)
        per_step = 3.0 * self._flops_per_token.numpy() + self._extra_flops_per_step  # (n_tasks,)
        metrics["learner/flops"] = float((per_step * real_tokens).sum())
        return metrics

    def validate(self, tensors: dict) -> dict[str, dict[str, float]]:
        """`agents.loss.action_metrics` of the policy (the moving average where there is one) on
        `tensors` (`batch_to_tensors` of held-out data), in eval mode: {task: {"nll", "action_error"}}.
        Changes no weights and draws no random numbers."""
        training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._policy_parameters(), torch.autocast(
                    self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16 and self.device.type == "cuda"):
                hidden = self.model(tensors["task"], tensors["observations"], tensors["actions"],
                                    tensors["returns_to_go"], tensors["timesteps"], rows=tensors["rows"])  # (B, K, C)
                return action_metrics(self.model, tensors, hidden)
        finally:
            self.model.train(training)

    @contextlib.contextmanager
    def _policy_parameters(self):
        """Inside, the model's parameters are the policy's (see `policy_state`); the raw ones after."""
        if self._ema is None:
            yield
            return
        params = [p.detach() for p in self.model.parameters()]
        raw = [p.clone() for p in params]
        torch._foreach_copy_(params, self._ema)
        try:
            yield
        finally:
            torch._foreach_copy_(params, raw)

    def _update_ema(self) -> None:
        """Move the average toward the parameters just updated; the decay ramps up over the first
        updates ((1 + n) / (10 + n)), so early weights do not linger in it."""
        if not self.cfg.ema_decay:
            return
        params = [p.detach() for p in self.model.parameters()]
        if self._ema is None:
            self._ema = [p.clone() for p in params]
            return
        decay = min(self.cfg.ema_decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._ema, params, 1.0 - decay)

    def policy_state(self) -> dict[str, torch.Tensor]:
        """The policy's state dict: the model's, with the moving average in place of the
        parameters when there is one (on the learner's device, not copied)."""
        state = self.model.state_dict()
        if self._ema is not None:
            state.update(zip((name for name, _ in self.model.named_parameters()), self._ema))
        return state

    def weights(self) -> dict[str, torch.Tensor]:
        """CPU copies of the policy's state dict, safe to publish while training goes on."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self.policy_state().items()}

    def load_weights(self, state: dict[str, torch.Tensor]):
        """Set the model's weights; a moving average starts again from them."""
        self.model.load_state_dict(state)
        self._ema = None

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically: model, optimizers, schedule, counter, RNGs."""
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "temperature_optimizer": self.temperature_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "updates": self.updates,
            "torch_rng": torch.get_rng_state(),
            # Plain lists and numbers, so torch.load(weights_only=True) accepts it.
            "numpy_rng": {"kind": kind, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached_gaussian": cached},
        }
        if self.critic is not None:
            state["critic"] = self.critic.state_dict()
            state["target_critic"] = self.target_critic.state_dict()
            state["critic_optimizer"] = self.critic_optimizer.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.temperature_optimizer.load_state_dict(state["temperature_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.critic is not None:
            if "critic" not in state:
                raise ValueError("this learner has a critic (critic_weight > 0) but the checkpoint has none")
            self.critic.load_state_dict(state["critic"])
            self.target_critic.load_state_dict(state["target_critic"])
            self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.updates = int(state["updates"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        r = state["numpy_rng"]
        np.random.set_state((r["kind"], np.asarray(r["keys"], dtype=np.uint32), r["pos"], r["has_gauss"], r["cached_gaussian"]))

    def save(self, directory: str | os.PathLike):
        """Write `model.safetensors` (the policy, see `policy_state`) and `learner_state.pt`
        (the rest, with the raw parameters when the policy is their average; tensors and plain
        containers only)."""
        os.makedirs(directory, exist_ok=True)
        state = self.state_dict()
        if self._ema is None:
            policy = state.pop("model")
        else:
            policy = self.policy_state()
            state["train_model"] = state.pop("model")
        safetensors.torch.save_file({k: v.detach().contiguous() for k, v in policy.items()},
                                    os.path.join(directory, MODEL_FILE))
        torch.save(state, os.path.join(directory, STATE_FILE))

    def load(self, directory: str | os.PathLike):
        """Restore what `save` wrote."""
        model_path = os.path.join(directory, MODEL_FILE)
        state_path = os.path.join(directory, STATE_FILE)
        for path in (model_path, state_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"checkpoint file {path} not found")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        policy = safetensors.torch.load_file(model_path, device=str(self.device))
        state["model"] = state.pop("train_model", policy)
        self.load_state_dict(state)
        self._ema = None
        if policy is not state["model"] and self.cfg.ema_decay:
            self._ema = [policy[name].clone() for name, _ in self.model.named_parameters()]

    def export_weights(self, path: str | os.PathLike):
        """Write the policy's state dict (see `policy_state`) as one safetensors file."""
        safetensors.torch.save_file({k: v.detach().contiguous() for k, v in self.policy_state().items()}, str(path))
