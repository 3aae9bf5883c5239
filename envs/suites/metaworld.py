"""Meta-World v3: 50 manipulation tasks of one Sawyer arm (39-D observations, 4-D actions).

Every task has the same spaces, so one model can carry its whole self from task to task; the
package's hand-engineered policy of each task is its `scripted` expert. Task names are
"Meta-World/<env name>", e.g. "Meta-World/reach-v3"; `MT10` and `MT50` list the benchmark's sets.

Goals: each task's 50 fixed goals of the multi-task benchmark (`Meta-World/MT1` built with
GOAL_SET_SEED, as MT10/MT50 fix theirs), one drawn per episode. A seeded reset
(`make_env(seed=s)`, the experts' `reset(seed=s)`) seeds the draw, so an env seed names its goal
sequence; Meta-World itself ignores `reset(seed=)`. Observations include the goal (MT, not ML).
An episode is Meta-World's usual 500 steps; success is `info["success"]` at any step.
"""
from __future__ import annotations

import warnings
from functools import partial

import gymnasium as gym
import numpy as np

from frontier.agents.spaces import Box
from frontier.envs.experts.base import PolicyExpert, filtered
from frontier.envs.spec import TaskSpec

GOAL_SET_SEED = 0
EPISODE_STEPS = 500
PREFIX = "Meta-World/"

MT10 = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
        "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3"]
MT50 = ["assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3", "button-press-topdown-v3",
        "button-press-topdown-wall-v3", "button-press-v3", "button-press-wall-v3", "coffee-button-v3",
        "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3", "door-lock-v3",
        "door-open-v3", "door-unlock-v3", "hand-insert-v3", "drawer-close-v3", "drawer-open-v3",
        "faucet-open-v3", "faucet-close-v3", "hammer-v3", "handle-press-side-v3", "handle-press-v3",
        "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3", "pick-place-wall-v3", "pick-out-of-hole-v3",
        "pick-place-v3", "plate-slide-v3", "plate-slide-side-v3", "plate-slide-back-v3",
        "plate-slide-back-side-v3", "peg-insert-side-v3", "peg-unplug-side-v3", "soccer-v3", "stick-push-v3",
        "stick-pull-v3", "push-v3", "push-wall-v3", "push-back-v3", "reach-v3", "reach-wall-v3",
        "shelf-place-v3", "sweep-into-v3", "sweep-v3", "window-open-v3", "window-close-v3"]

# Measured with `python -m frontier.envs.measure_references --tasks Meta-World/...` (20 episodes, env
# seeds 1000..1019, metaworld 3.1.1, mujoco 3.3.0): (random return, scripted return). Tasks
# without an entry are measured on first use and kept in the run directory.
REFERENCES: dict[str, tuple[float, float]] = {
    "Meta-World/button-press-topdown-v3": (207.3, 3844.5),
    "Meta-World/door-open-v3": (297.7, 4221.8),
    "Meta-World/drawer-close-v3": (503.2, 4255.6),
    "Meta-World/drawer-open-v3": (593.7, 4047.7),
    "Meta-World/peg-insert-side-v3": (8.1, 3428.6),
    "Meta-World/pick-place-v3": (6.6, 4480.2),
    "Meta-World/push-v3": (25.9, 4292.3),
    "Meta-World/reach-v3": (1057.8, 4847.9),
    "Meta-World/window-close-v3": (310.7, 3630.8),
    "Meta-World/window-open-v3": (241.2, 2113.2),
}

# Std of the Gaussian noise on the EXECUTED action of scripted data collection (DART, see
# envs.experts.base.ExpertSource._attempts): the scripted policies servo to waypoints, so clean episodes
# follow one path per goal and an imitator never sees a correction.
SCRIPTED_NOISE = 0.1


class SeededGoals(gym.Wrapper):
    """Maps `reset(seed=s)` to Meta-World's `seed(s)`, which seeds the goal draw of later resets,
    and declares the goal-observable observation space (the env's own bounds the goal to 0)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space, goal = env.unwrapped.sawyer_observation_space, env.unwrapped.goal_space
        low, high = space.low.copy(), space.high.copy()
        low[-3:], high[-3:] = goal.low, goal.high  # the last 3 entries are the goal's position
        self.observation_space = gym.spaces.Box(low, high, dtype=space.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.env.unwrapped.seed(int(seed))
        return self.env.reset(options=options)


def make_env(env_name: str) -> gym.Env:
    """The raw Meta-World env of one task (before TaskSpec.make_env's wrappers)."""
    import metaworld  # noqa: F401  (registers the Meta-World/* ids)

    env = gym.make(f"{PREFIX}MT1", env_name=env_name, seed=GOAL_SET_SEED, disable_env_checker=True)
    return SeededGoals(env)


class ScriptedPolicy:
    """Meta-World's hand-engineered policy of one task as a controller (obs, env) -> action."""

    def __init__(self, env_name: str):
        from metaworld.policies import ENV_POLICY_MAP

        self.policy = ENV_POLICY_MAP[env_name]()

    def __call__(self, obs, env) -> np.ndarray:
        with warnings.catch_warnings():  # "Constant(s) may be too high": it clips, as the env does
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(self.policy.get_action(np.asarray(obs, dtype=np.float64)), dtype=np.float32)


def scripted(env_name: str, spec: TaskSpec) -> PolicyExpert:
    return PolicyExpert(spec, ScriptedPolicy(env_name), kind="scripted",
                        policy_id=f"metaworld-{env_name}-scripted", noise=SCRIPTED_NOISE)


def tasks() -> list[TaskSpec]:
    out = []
    for env_name in MT50:
        name = PREFIX + env_name
        random_return, expert_return = REFERENCES.get(name, (None, None))
        out.append(TaskSpec(
            name=name,
            env=partial(make_env, env_name),
            suite="metaworld",
            max_episode_steps=EPISODE_STEPS,
            reward_scale=0.001,  # rewards are 0..10 a step, returns up to about 5,000
            # Scripted returns are 2,000-4,900: condition on about the best of them, explore above.
            eval_target=expert_return if expert_return is not None else 4500.0,
            explore_target=1.2 * expert_return if expert_return is not None else 5000.0,
            experts={"scripted": partial(scripted, env_name), "filtered": filtered},
            random_return=random_return,
            expert_return=expert_return,
            success_key="success",
            spaces=(Box((39,)), Box((4,))),
        ))
    return out
