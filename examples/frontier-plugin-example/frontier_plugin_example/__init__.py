"""Example frontier plugin: PointReach-v0, a 2-D point mass that must reach a goal.

frontier finds `tasks` through the `frontier.tasks` entry point declared in pyproject.toml.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from frontier.envs.experts import PolicyExpert, filtered
from frontier.envs.spec import TaskSpec


class PointReachEnv(gym.Env):
    """A unit point mass in the square [-1, 1]^2, pushed by a force, rewarded for nearness.

    Observation (6,): position (2), velocity (2), goal (2). Action (2,): force in [-1, 1].
    Reward: minus the distance to the goal, each step. The episode terminates once the mass
    is within `goal_radius` of the goal (so reaching it quickly is what pays).
    """

    dt = 0.1
    damping = 0.1
    goal_radius = 0.05

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos = np.zeros(2)
        self.vel = np.zeros(2)
        self.goal = np.zeros(2)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.vel, self.goal]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1.0, 1.0, 2)
        self.vel = np.zeros(2)
        self.goal = self.np_random.uniform(-1.0, 1.0, 2)
        return self._obs(), {}

    def step(self, action):
        force = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        self.vel = (1.0 - self.damping) * self.vel + force * self.dt
        self.pos = np.clip(self.pos + self.vel * self.dt, -1.0, 1.0)
        distance = float(np.linalg.norm(self.goal - self.pos))
        return self._obs(), -distance, distance < self.goal_radius, False, {"distance": distance}


def pd_controller(obs, env) -> np.ndarray:
    """Scripted expert: PD control of the force toward the goal."""
    pos, vel, goal = obs[0:2], obs[2:4], obs[4:6]
    # Stiff enough to saturate far from the goal; the damping term stops it overshooting.
    return np.clip(10.0 * (goal - pos) - 3.0 * vel, -1.0, 1.0).astype(np.float32)


def scripted_expert(spec: TaskSpec) -> PolicyExpert:
    return PolicyExpert(spec, pd_controller, kind="scripted", policy_id="point-reach-pd-v1")


def tasks() -> list[TaskSpec]:
    """Entry point of the `frontier.tasks` group."""
    return [
        TaskSpec(
            name="PointReach-v0",
            env=PointReachEnv,
            suite="point",
            max_episode_steps=100,
            reward_scale=0.1,
            eval_target=-12.0,
            explore_target=-10.0,
            experts={"scripted": scripted_expert, "filtered": filtered},
            # random_return / expert_return left None: frontier measures and caches them.
        )
    ]


def metaworld_tasks() -> list[TaskSpec]:
    """Entry point adding a task of the Meta-World suite: reach-v3 with 150-step episodes (the
    scripted reach succeeds within about 50 steps), built from the suite's own env and expert."""
    from functools import partial

    from frontier.envs.suites import metaworld

    return [
        TaskSpec(
            name="Meta-World/reach-v3-150",
            env=partial(metaworld.make_env, "reach-v3"),
            suite="metaworld",
            max_episode_steps=150,
            reward_scale=0.001,
            eval_target=1500.0,
            explore_target=1700.0,
            experts={"scripted": partial(metaworld.scripted, "reach-v3"), "filtered": filtered},
            success_key="success",  # Meta-World's info["success"], met at any step
        )
    ]
