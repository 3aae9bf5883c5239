"""A trained run's policy in your own loop: load a run directory (or one of its weights files) and
act on a batch of environments of one of its tasks, on CPU or GPU.

    from frontier.distributed.run_policy import load_policy
    from frontier.envs.registry import get_task

    policy = load_policy("runs/quick", "CartPole-v1", num_envs=4)
    envs = [get_task("CartPole-v1").make_env(seed=i) for i in range(4)]   # the env as the agent saw it
    obs = [env.reset(seed=i)[0] for i, env in enumerate(envs)]
    policy.reset()                                   # every env starts an episode
    actions = policy.act(obs)                        # one batched forward, one action per env
    steps = [env.step(a) for env, a in zip(envs, actions)]
    policy.reward([r for _, r, *_ in steps])         # before the next act; policy.reset([i]) when env i ends

The policy conditions each episode on the return target the run's last evaluation used (from
evals.jsonl: a number, or the return head's prediction from the first observation), or on
`target`; it acts deterministically unless `sample=True`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors.torch import load_file

from frontier.agents.model import DecisionTransformer
from frontier.agents.policy import Policy
from frontier.distributed import config as config_mod
from frontier.envs.registry import get_task

# A target the run's evaluations recorded as "predict it" (train.return_targets: state).
PREDICTED = None


class RunPolicy:
    """`num_envs` environments of one task of a trained run (see the module docstring)."""

    def __init__(self, model: DecisionTransformer, task: str, num_envs: int, target: float | None,
                 device: str, sample: bool, seed: int):
        names = [t.name for t in model.tasks]
        self.task_index = names.index(task)
        self.num_envs, self.target, self.sample = num_envs, target, sample
        self.policy = Policy(model, model.tasks, num_envs, device=device, seed=seed)

    def reset(self, envs: Sequence[int] | None = None) -> None:
        """Start a new episode in these envs (default all)."""
        for i in range(self.num_envs) if envs is None else envs:
            self.policy.reset(i, self.task_index, self.target)

    def act(self, observations: Sequence[np.ndarray]) -> list:
        """One action per env, from its episode so far and `observations` (one per env)."""
        return self.policy.act(list(range(self.num_envs)), list(observations), deterministic=not self.sample)

    def reward(self, rewards: Sequence[float]) -> None:
        """The rewards the last actions earned, one per env."""
        self.policy.rewards(list(range(self.num_envs)), [float(r) for r in rewards])


def load_policy(run: str | Path, task: str, num_envs: int = 1, device: str = "cpu",
                target: float | None | str = "run", sample: bool = False, seed: int = 0) -> RunPolicy:
    """The policy of a run directory (its model.safetensors; `run` may also be a weights file
    inside it, such as checkpoints/ckpt-N/model.safetensors) for `num_envs` envs of `task`.
    `target`: "run" (the return target of the run's last evaluation), a number, or None (the
    return head's prediction from each episode's first observation). ValueError naming what is
    missing or unknown."""
    path = Path(run)
    run_dir = path if path.is_dir() else next((p for p in path.parents if (p / "config.yaml").is_file()), path.parent)
    weights = path / "model.safetensors" if path.is_dir() else path
    if not (run_dir / "config.yaml").is_file() or not weights.is_file():
        raise ValueError(f"{run}: not a finished run directory or a weights file inside one "
                         "(needs config.yaml and model.safetensors)")
    cfg = config_mod.load(run_dir / "config.yaml")
    if task not in cfg.tasks:
        raise ValueError(f"task {task!r} is not one the run trained on ({', '.join(cfg.tasks)})")
    if target == "run":
        target = get_task(task).return_target("eval")
        evals = run_dir / "evals.jsonl"
        lines = [line for line in evals.read_text().splitlines() if line.strip()] if evals.is_file() else []
        if lines and task in (json.loads(lines[-1]).get("targets") or {}):
            target = json.loads(lines[-1])["targets"][task]
    model = DecisionTransformer(cfg.model, [get_task(t).info() for t in cfg.tasks])
    model.load_state_dict(load_file(str(weights)))
    if target is PREDICTED and not cfg.model.return_head:
        raise ValueError(f"{run}: its model has no return head to predict targets from (give target=)")
    return RunPolicy(model, task, num_envs, target, device, sample, seed)
