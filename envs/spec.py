"""TaskSpec: everything frontier needs to know to build, score and feed one task."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from frontier.agents.spaces import Box, Discrete, Space, TaskInfo
from frontier.envs.deadline import StepDeadline


@dataclass
class TaskSpec:
    """One task.

    name: unique task name, e.g. "CartPole-v1" or "ALE/Pong-ram-v5".
    env: a gymnasium id (made with `env_kwargs`) or a zero-argument callable returning an env.
    suite: "classic", "mujoco", "atari", or a plugin's own suite name.
    max_episode_steps: time limit applied by `make_env` (agent steps).
    preprocess: optional callable env -> env applied after construction (e.g. Atari frame
        processing, RAM scaling); continuous actions are rescaled to [-1, 1] afterwards.
    reward_scale: multiplies rewards to form returns-to-go for the model.
    eval_target / explore_target: return-to-go targets (unscaled, in return units) used to
        condition evaluation and exploration rollouts.
    experts: expert source kind ("scripted", "filtered", "rl", "dataset", ...) -> factory
        `factory(spec) -> ExpertSource`.
    random_return / expert_return: reference returns for the normalized score; None means
        measure them (and cache the measurement).
    target_entropy: ODT entropy target of the action distribution; None keeps the agent's
        default (see agents.spaces.TaskInfo).
    success_key: the `info` key whose truthy value at any step of an episode marks it a success
        (Meta-World: "success"); None: the task has no success condition, only returns.
    step_timeout_s: seconds one env step or reset may take before it counts as hung and raises
        StepTimeout, which costs its episode like any env failure (envs/deadline.py).

    Usage:
        env = spec.make_env(seed=0)       # what the agent sees, actions in [-1, 1]
        info = spec.info()                # agents.spaces.TaskInfo, cached
    """

    name: str
    env: str | Callable[[], gym.Env]
    suite: str
    max_episode_steps: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    preprocess: Callable[[gym.Env], gym.Env] | None = None
    reward_scale: float = 1.0
    eval_target: float = 0.0
    explore_target: float = 0.0
    experts: dict[str, Callable[["TaskSpec"], Any]] = field(default_factory=dict)
    random_return: float | None = None
    expert_return: float | None = None
    target_entropy: float | None = None
    step_timeout_s: float = 60.0
    success_key: str | None = None
    # The agent's (observation, action) spaces where the suite knows them without building an env
    # (`frontier tasks` lists them so); info() checks them against the built env.
    spaces: tuple[Space, Space] | None = None
    # Cached TaskInfo, filled by the first info() call.
    _info: TaskInfo | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.max_episode_steps < 1:
            raise ValueError(f"task {self.name!r}: max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.reward_scale <= 0:
            raise ValueError(f"task {self.name!r}: reward_scale must be > 0, got {self.reward_scale}")
        if self.step_timeout_s <= 0:
            raise ValueError(f"task {self.name!r}: step_timeout_s must be > 0, got {self.step_timeout_s}")

    def return_target(self, mode: str) -> float:
        """The task's own return target for rollouts in `mode` ("eval" or "explore")."""
        return self.eval_target if mode == "eval" else self.explore_target

    def make_env(self, seed: int | None = None) -> gym.Env:
        """Build the env exactly as the agent sees it.

        Order: construct (gym id without its registered time limit, or the callable), then
        `preprocess`, then a TimeLimit of `max_episode_steps` agent steps, then Box actions
        rescaled to [-1, 1] and vector observations cast to float32, then the deadline of
        `step_timeout_s` on every step and reset.

        `seed`, when given, is used by one `reset(seed=seed)` done here (and seeds the action
        space), so later `reset()` calls without a seed continue a deterministic stream.
        A caller that passes `seed=` to its own first reset gets that seed instead.
        """
        if isinstance(self.env, str):
            # max_episode_steps=-1: drop the registered TimeLimit, ours counts agent steps.
            env = gym.make(self.env, max_episode_steps=-1, **self.env_kwargs)
        else:
            env = self.env()
        if self.preprocess is not None:
            env = self.preprocess(env)
        env = gym.wrappers.TimeLimit(env, self.max_episode_steps)
        if isinstance(env.action_space, gym.spaces.Box):
            space = env.action_space
            if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
                raise ValueError(f"task {self.name!r}: continuous action bounds must be finite, got {space}")
            one = np.ones(space.shape, dtype=np.float32)
            env = gym.wrappers.RescaleAction(env, -one, one)
        obs_space = env.observation_space
        if isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1 and obs_space.dtype != np.float32:
            env = gym.wrappers.TransformObservation(
                env,
                lambda o: np.asarray(o, dtype=np.float32),
                gym.spaces.Box(
                    obs_space.low.astype(np.float32), obs_space.high.astype(np.float32), obs_space.shape, np.float32
                ),
            )
        env = StepDeadline(env, self.step_timeout_s)
        if seed is not None:
            env.reset(seed=seed)
            env.action_space.seed(seed)
        return env

    def info(self) -> TaskInfo:
        """The agent's view of this task (built from one env, then cached)."""
        if self._info is None:
            env = self.make_env()
            try:
                self._info = TaskInfo(
                    name=self.name,
                    observation=to_agent_space(env.observation_space, self.name, "observation"),
                    action=to_agent_space(env.action_space, self.name, "action"),
                    reward_scale=self.reward_scale,
                    target_entropy=self.target_entropy,
                )
            finally:
                env.close()
            built = (self._info.observation, self._info.action)
            if self.spaces is not None and self.spaces != built:
                self._info = None
                raise ValueError(f"task {self.name!r}: declared spaces {tuple(map(str, self.spaces))} "
                                 f"differ from the env's {tuple(map(str, built))}")
        return self._info

    def listed_spaces(self) -> tuple[Space, Space]:
        """The agent's (observation, action) spaces: the declared ones, else built from one env."""
        if self.spaces is not None:
            return self.spaces
        info = self.info()
        return info.observation, info.action


def to_agent_space(space: gym.Space, task: str, what: str) -> Space:
    """Convert a gymnasium space to an agents.spaces one (ValueError if unsupported)."""
    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"task {task!r}: {what} Discrete space must start at 0, got start={space.start}")
        return Discrete(int(space.n))
    if isinstance(space, gym.spaces.Box):
        shape = tuple(int(s) for s in space.shape)
        if len(shape) == 1 and space.dtype == np.float32:
            return Box(shape, "float32")
        if len(shape) == 3 and space.dtype == np.uint8:
            return Box(shape, "uint8")
        raise ValueError(
            f"task {task!r}: {what} Box must be float32 (D,) or uint8 (H, W, C), got {space.dtype} {shape}"
        )
    raise ValueError(f"task {task!r}: unsupported {what} space {space}")
