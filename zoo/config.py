"""One RL expert training run's settings (`frontier experts train`)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from frontier.envs.experts.rl import ACTIVATIONS


ALGOS = ("ppo", "sac")
# A "medium" policy returns about a third to a half of the expert's (D4RL's medium sets);
# among snapshots the one closest to MEDIUM_TARGET of the final return (normalized) is chosen.
MEDIUM_RANGE = (1 / 3, 1 / 2)
MEDIUM_TARGET = 0.4
# Snapshots are ranked on env seeds eval_seed + SELECTION_SEEDS + j; the chosen expert and
# medium policies are evaluated on eval_seed + j, so their reported returns are not the ranking's.
SELECTION_SEEDS = 500_000


@dataclass
class ExpertTrainConfig:
    """One RL expert training run (`frontier experts train`)."""

    task: str
    """Task name (frontier registry)."""
    algo: str = "ppo"
    """RLlib algorithm: "ppo" or "sac"."""
    steps: int = 1_000_000
    """Env steps to train for (the run stops at the first iteration past it)."""
    seed: int = 0
    """RLlib seed (network init and training env seeds)."""
    out: str = ""
    """Run directory; default runs/experts/<task>-<algo>-s<seed>."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the policy and value/Q networks."""
    activation: str = "tanh"
    """Hidden activation (tanh, relu, silu, elu)."""
    lr: float = 3e-4
    """Learning rate of all networks."""
    gamma: float = 0.99
    """Discount."""
    batch: int = 2048
    """PPO: env steps per training iteration. SAC: replay minibatch size."""
    minibatch: int = 64
    """PPO: SGD minibatch size."""
    epochs: int = 10
    """PPO: passes over each batch."""
    env_runners: int = 0
    """Remote RLlib EnvRunner actors; 0 samples in this process (fastest on 2 cores)."""
    envs_per_runner: int = 1
    """Vectorized envs per EnvRunner."""
    snapshot_every: int = 0
    """Export a snapshot policy (and checkpoint) every this many env steps; 0: steps / 10."""
    snapshot_eval_episodes: int = 5
    """Evaluation episodes of each snapshot (the final expert uses eval_episodes)."""
    eval_episodes: int = 20
    """Evaluation episodes of the final expert and of the chosen medium policy."""
    eval_seed: int = 1_000_000
    """Env seed of the first evaluation episode (episode j uses eval_seed + j); apart from training seeds."""

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {self.algo!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        for name in ("steps", "batch", "minibatch", "epochs", "envs_per_runner", "eval_episodes",
                     "snapshot_eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.env_runners < 0 or self.snapshot_every < 0:
            raise ValueError(f"env_runners and snapshot_every must be >= 0, got {self.env_runners}, {self.snapshot_every}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        if not self.out:
            self.out = str(Path("runs") / "experts" / f"{self.task.replace('/', '_')}-{self.algo}-s{self.seed}")
        if not self.snapshot_every:
            self.snapshot_every = max(1, self.steps // 10)

    @property
    def run_id(self) -> str:
        return f"{self.task.replace('/', '_')}-{self.algo}-s{self.seed}"

    def command(self) -> str:
        """The `frontier experts train` command that reproduces this run."""
        default = ExpertTrainConfig(task=self.task, algo=self.algo, steps=self.steps, seed=self.seed)
        parts = ["frontier experts train", self.task]
        for f in fields(self):
            if f.name in ("task", "out"):
                continue
            value = getattr(self, f.name)
            if f.name in ("algo", "steps", "seed") or value != getattr(default, f.name):
                flag = "--" + f.name.replace("_", "-")
                parts.append(f"{flag} {','.join(map(str, value)) if f.name == 'hidden' else value}")
        return " ".join(parts)
