"""Exported RL experts: a plain torch MLP in safetensors plus a JSON card. No Ray, no RLlib.

    policy = MLPPolicy.load("envs/zoo/InvertedPendulum-v5-ppo-s0-expert.safetensors")
    action = policy(obs, env)                  # deterministic, env units ([-1, 1] for Box)
    expert = RLExpert(get_task("InvertedPendulum-v5"), path)   # a PolicyExpert, kind "rl"
    RLExpert(spec, path, sample=True)          # actions drawn from the policy's distribution
    ReplayExpert(spec, paths)                  # a training run's snapshots in turn (medium-replay)

A policy is two files with one stem: `<id>.safetensors` (the policy network's Linear
weights, keys `net.<i>.weight|bias` by position in the layer list) and `<id>.json`, its
card. The card's "policy" entry says how to rebuild and read the network:
    {"layers": ["linear", "tanh", "linear", "tanh", "linear"],  # in order
     "head": "gaussian" | "squashed_gaussian" | "categorical",
     "action_dim": A,
     "obs_norm": null | {"mean": [...], "std": [...], "eps": 1e-6, "clip": 10.0}}
Deterministic actions: the mean for "gaussian" (the first A outputs; the rest are
log-stds), tanh of the mean for "squashed_gaussian", argmax of the logits for "categorical".
The rest of the card (task, algorithm, hyperparameters, seed, env steps, costs,
evaluation, library versions, role) is provenance, read by `frontier experts list`.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import safetensors.torch
import torch
from torch import nn

from frontier.envs.experts.base import PolicyExpert
from frontier.envs.records import read_json_object
from frontier.envs.spec import TaskSpec

# Committed zoo: `<id>.safetensors` + `<id>.json` pairs, see envs/zoo/README.md.
ZOO_DIR = Path(__file__).resolve().parents[1] / "zoo"
# Medium-replay sets: <zoo>/medium-replay/<task>/ holds a training run's snapshots up to the
# medium level and index.json naming them in training order (`frontier experts medium-replay`).
REPLAY_SUBDIR = "medium-replay"

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU}
HEADS = ("gaussian", "squashed_gaussian", "categorical")
# Card fields every policy must carry (the rest of the card is optional provenance).
REQUIRED_CARD_KEYS = ("id", "task", "algorithm", "policy")


def policy_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights, card) paths for a policy named by either file or by the common stem."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def read_card(path: str | Path) -> dict:
    """A policy card (ValueError naming the file if missing, unreadable or incomplete)."""
    return read_json_object(path, "policy card", REQUIRED_CARD_KEYS)


def build_net(layers: list[str]) -> nn.Sequential:
    """Shape-less skeleton: Linear slots are filled by `load_state`; sizes come from the weights."""
    mods = []
    for name in layers:
        if name == "linear":
            mods.append(nn.Linear(1, 1))
        elif name in ACTIVATIONS:
            mods.append(ACTIVATIONS[name]())
        else:
            raise ValueError(f"unknown layer {name!r} (known: linear, {', '.join(ACTIVATIONS)})")
    return nn.Sequential(*mods)


class MLPPolicy:
    """Deterministic controller `policy(obs, env) -> action` from an exported MLP."""

    def __init__(self, net: nn.Sequential, head: str, action_dim: int, obs_norm: dict | None, card: dict):
        if head not in HEADS:
            raise ValueError(f"unknown policy head {head!r} (known: {', '.join(HEADS)})")
        self.net = net.eval()
        self.head = head
        self.action_dim = int(action_dim)
        self.card = card
        self.obs_mean = self.obs_scale = None
        self.obs_clip = None
        if obs_norm is not None:
            self.obs_mean = np.asarray(obs_norm["mean"], dtype=np.float32)
            # RLlib's MeanStdFilter divides by (std + eps).
            self.obs_scale = np.asarray(obs_norm["std"], dtype=np.float32) + np.float32(obs_norm.get("eps", 0.0))
            self.obs_clip = obs_norm.get("clip")

    @classmethod
    def load(cls, path: str | Path) -> "MLPPolicy":
        """Load `<id>.safetensors` + `<id>.json` (path: either file or the stem)."""
        weights_path, card_path = policy_paths(path)
        card = read_card(card_path)
        spec = card["policy"]
        try:
            layers, head, action_dim = spec["layers"], spec["head"], int(spec["action_dim"])
            obs_norm = spec.get("obs_norm")
            net = build_net(layers)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{card_path}: bad 'policy' entry ({e!r})") from None
        if not weights_path.is_file():
            raise ValueError(f"{weights_path}: policy weights not found")
        try:
            state = safetensors.torch.load_file(str(weights_path))
        except Exception as e:  # safetensors raises its own error types for bad headers and short files
            raise ValueError(f"{weights_path}: corrupt or truncated safetensors file ({e})") from None
        load_state(net, state, weights_path)
        out = [m for m in net if isinstance(m, nn.Linear)]
        n_in, n_out = out[0].in_features, out[-1].out_features
        want_out = {"gaussian": 2 * action_dim, "squashed_gaussian": 2 * action_dim, "categorical": action_dim}[head]
        if n_out != want_out:
            raise ValueError(f"{weights_path}: network has {n_out} outputs, a {head} head of "
                             f"action_dim {action_dim} needs {want_out} (card {card_path})")
        if obs_norm is not None and (len(obs_norm["mean"]) != n_in or len(obs_norm["std"]) != n_in):
            raise ValueError(f"{card_path}: observation normalization has {len(obs_norm['mean'])} entries, "
                             f"the network takes {n_in} inputs")
        return cls(net, head, action_dim, obs_norm, card)

    @property
    def obs_dim(self) -> int:
        return next(m for m in self.net if isinstance(m, nn.Linear)).in_features

    @torch.no_grad()
    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Actions for a batch of raw observations (B, D): (B, A) float32 or (B,) int64.

        Deterministic without `rng`; with it, drawn from the policy's distribution (the Gaussian's
        std is exp of the network's log-std outputs; logits give a categorical).
        """
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise ValueError(f"policy {self.card['id']!r} takes observations (B, {self.obs_dim}), got {x.shape}")
        if self.obs_mean is not None:
            x = (x - self.obs_mean) / self.obs_scale
            if self.obs_clip is not None:
                x = np.clip(x, -self.obs_clip, self.obs_clip)
        out = self.net(torch.from_numpy(x)).numpy().astype(np.float64)  # (B, out)
        if self.head == "categorical":
            if rng is None:
                return out.argmax(-1).astype(np.int64)
            p = np.exp(out - out.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)  # (B, n)
            return np.array([rng.choice(len(q), p=q) for q in p], dtype=np.int64)
        mean = out[:, : self.action_dim]  # (B, A); the other half are log-stds
        if rng is not None:
            mean = mean + np.exp(out[:, self.action_dim :]) * rng.standard_normal(mean.shape)
        if self.head == "squashed_gaussian":
            mean = np.tanh(mean)
        return mean.astype(np.float32)

    def __call__(self, obs, env=None):
        action = self.act(np.asarray(obs)[None])[0]
        return int(action) if self.head == "categorical" else action


class SampledPolicy:
    """Controller drawing actions from an `MLPPolicy`'s distribution, reseeded per episode
    (`ExpertSource._attempts` calls `seed(env_seed)`), so the same env seed gives the same episode.
    Given several policies, the episode of env seed s is played by policy s mod n."""

    def __init__(self, *policies: MLPPolicy):
        self.policies = policies
        self.seed(0)  # deterministic even if called outside an expert source

    def seed(self, env_seed: int) -> None:
        self.policy = self.policies[int(env_seed) % len(self.policies)]
        # Its own stream: the DART action noise draws from default_rng(env_seed).
        self.rng = np.random.default_rng([int(env_seed), 1])

    def __call__(self, obs, env=None):
        action = self.policy.act(np.asarray(obs)[None], self.rng)[0]
        return int(action) if self.policy.head == "categorical" else action


def load_state(net: nn.Sequential, state: dict[str, torch.Tensor], path: Path) -> None:
    """Put `state` into the Linear slots of `net` (ValueError naming `path` if they don't fit)."""
    expected = {f"{i}.{p}" for i, m in enumerate(net) if isinstance(m, nn.Linear) for p in ("weight", "bias")}
    got = {k.removeprefix("net.") for k in state}
    if got != expected:
        raise ValueError(f"{path}: tensors {sorted(got)} do not match the card's layers (want {sorted(expected)})")
    prev_out = None
    for i, m in enumerate(net):
        if not isinstance(m, nn.Linear):
            continue
        w, b = state[f"net.{i}.weight"], state[f"net.{i}.bias"]
        if w.ndim != 2 or b.shape != (w.shape[0],) or (prev_out is not None and w.shape[1] != prev_out):
            raise ValueError(f"{path}: layer {i} has weight {tuple(w.shape)} and bias {tuple(b.shape)}, "
                             f"which do not chain (previous layer gives {prev_out})")
        net[i] = nn.Linear(w.shape[1], w.shape[0])
        net[i].load_state_dict({"weight": w.float(), "bias": b.float()})
        prev_out = w.shape[0]


def save_policy(stem: str | Path, net: nn.Sequential, card: dict) -> tuple[Path, Path]:
    """Write `<stem>.safetensors` (Linear weights of `net`) and `<stem>.json` (`card`)."""
    weights_path, card_path = policy_paths(stem)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"net.{k}": v.detach().float().contiguous().clone() for k, v in net.state_dict().items()}
    safetensors.torch.save_file(state, str(weights_path))
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return weights_path, card_path


class RLExpert(PolicyExpert):
    """An exported RL policy as an expert source: kind "rl", policy_id = the card's id.

    `sample=True` records actions drawn from the policy's distribution instead of its mean: like
    D4RL's datasets, whose episodes then differ in return, so returns-to-go carry information
    (a deterministic policy's episodes all return about the same); the policy id gets "-sampled".
    """

    def __init__(self, spec: TaskSpec, path: str | Path, noise: float = 0.0, sample: bool = False):
        policy = MLPPolicy.load(path)
        if policy.card["task"] != spec.name:
            raise ValueError(f"{policy_paths(path)[1]}: policy is for task {policy.card['task']!r}, not {spec.name!r}")
        controller = SampledPolicy(policy) if sample else policy
        super().__init__(spec, controller, "rl", policy.card["id"] + ("-sampled" if sample else ""), noise=noise)


class ReplayExpert(PolicyExpert):
    """A training run's snapshot policies as one source, like D4RL's medium-replay datasets (the
    replay buffer of a run up to the medium policy): kind "rl", policy_id "<task>-medium-replay";
    equal episodes per snapshot (the episode of env seed s comes from snapshot s mod n), actions
    sampled from each snapshot's distribution; each episode's provenance names its snapshot."""

    def __init__(self, spec: TaskSpec, paths: list[str]):
        if not paths:
            raise ValueError(f"{spec.name}: a medium-replay source needs at least one snapshot")
        policies = [MLPPolicy.load(p) for p in paths]
        for path, policy in zip(paths, policies):
            if policy.card["task"] != spec.name:
                raise ValueError(f"{policy_paths(path)[1]}: policy is for task {policy.card['task']!r}, "
                                 f"not {spec.name!r}")
        super().__init__(spec, SampledPolicy(*policies), "rl", f"{spec.name}-medium-replay")

    def _source(self, env_seed: int) -> dict:
        policies = self.controller.policies
        return {**super()._source(env_seed), "snapshot": policies[int(env_seed) % len(policies)].card["id"]}


def zoo_replay(task: str, zoo_dir: str | Path | None = None) -> dict | None:
    """The medium-replay index of `task` (index.json, "paths" added: its snapshots' weights in
    training order), or None if the zoo has none. ValueError naming the file if it is unreadable."""
    directory = (Path(zoo_dir) if zoo_dir is not None else ZOO_DIR) / REPLAY_SUBDIR / task
    path = directory / "index.json"
    if not path.is_file():
        return None
    index = read_json_object(path, "medium-replay index", ("snapshots",))
    try:
        paths = [str(policy_paths(directory / s["id"])[0]) for s in index["snapshots"]]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a medium-replay index: its snapshots are malformed ({e!r})") from None
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ValueError(f"{path}: snapshot weights not found: {missing[0]}")
    return {**index, "paths": paths}


def zoo_cards(zoo_dir: str | Path | None = None, errors: dict[str, str] | None = None) -> list[dict]:
    """Every card in the zoo, sorted by (task, id), each with "path" (its weights file) added.

    A bad card (unreadable, or its weights missing) raises ValueError, unless `errors` is given:
    then it is skipped and recorded there, card path -> message (task discovery must not fail
    for every task because of one card)."""
    zoo = Path(zoo_dir) if zoo_dir is not None else ZOO_DIR
    cards = []
    for card_path in sorted(zoo.glob("*.json")):
        try:
            card = read_card(card_path)
            weights = policy_paths(card_path)[0]
            if not weights.is_file():
                raise ValueError(f"{weights}: policy weights not found (card {card_path})")
        except ValueError as e:
            if errors is None:
                raise
            errors[str(card_path)] = str(e)
            continue
        cards.append({**card, "path": str(weights)})
    return sorted(cards, key=lambda c: (c["task"], c["id"]))


def zoo_policy(task: str, role: str = "expert", zoo_dir: str | Path | None = None) -> dict | None:
    """The zoo card of `task` with this role ("expert" or "medium"), or None if the zoo has none."""
    for card in zoo_cards(zoo_dir):
        if card["task"] == task and card.get("role") == role:
            return card
    return None


def rl_factory(card: dict, sample: bool = False) -> Callable[[TaskSpec], RLExpert]:
    """TaskSpec.experts factory for a zoo card: `factory(spec) -> RLExpert` (picklable, for Ray workers)."""
    return partial(RLExpert, path=card["path"], sample=sample)


def replay_factory(index: dict) -> Callable[[TaskSpec], ReplayExpert]:
    """TaskSpec.experts factory for a medium-replay index (`zoo_replay`), picklable."""
    return partial(ReplayExpert, paths=index["paths"])
