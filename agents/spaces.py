"""Space descriptions independent of gymnasium.

Observations are a vector `Box` (float32, shape (D,)), an image `Box` (uint8, shape
(H, W, C)) or a `Discrete`. Actions are a `Discrete` or a vector `Box` whose bounds are
always [-1, 1]: the environment side rescales continuous actions, so the agent never
sees task-specific action ranges.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A box of shape `shape`: a vector (D,) of float32, or an image (H, W, C) of uint8."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self):
        if self.dtype not in ("float32", "uint8"):
            raise ValueError(f"Box dtype must be float32 or uint8, got {self.dtype!r}")
        if len(self.shape) not in (1, 3) or any(int(s) <= 0 for s in self.shape):
            raise ValueError(f"Box shape must be (D,) or (H, W, C) with positive sizes, got {self.shape}")
        if len(self.shape) == 3 and self.dtype != "uint8":
            raise ValueError(f"image Box {self.shape} must be uint8")

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def dim(self) -> int:
        """Flat size (D for vectors, H*W*C for images)."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __str__(self) -> str:
        return f"Box{tuple(self.shape)}:{self.dtype}"


@dataclass(frozen=True)
class Discrete:
    """Integers 0..n-1."""

    n: int

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"Discrete needs n >= 1, got {self.n}")

    def __str__(self) -> str:
        return f"Discrete({self.n})"


Space = Box | Discrete


@dataclass(frozen=True)
class TaskInfo:
    """What the agent knows of a task: its spaces and how its returns are scaled.

    `reward_scale` multiplies rewards before they become returns-to-go, so that tasks with
    returns of very different size condition the model on comparable numbers.
    `target_entropy` is the ODT entropy target of the action distribution; None picks
    the default (-action_dim for continuous actions, 0.3 * ln(n) for discrete ones).
    """

    name: str
    observation: Space
    action: Space
    reward_scale: float = 1.0
    target_entropy: float | None = None

    def __post_init__(self):
        if isinstance(self.action, Box) and self.action.is_image:
            raise ValueError(f"task {self.name!r}: image actions are not supported")
        if self.reward_scale <= 0:
            raise ValueError(f"task {self.name!r}: reward_scale must be > 0, got {self.reward_scale}")

    @property
    def continuous(self) -> bool:
        return isinstance(self.action, Box)

    @property
    def entropy_target(self) -> float:
        if self.target_entropy is not None:
            return float(self.target_entropy)
        if isinstance(self.action, Box):
            return -float(self.action.dim)
        import math

        return 0.3 * math.log(self.action.n)
