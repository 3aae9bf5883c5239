"""Expert sources: producers of whole, provenance-tagged episodes for one task.

    expert = make_expert(get_task("CartPole-v1"), "scripted")   # envs.registry
    for ep in expert.episodes(10, seed=0):   # episode j uses env seed 0 + j
        store.add(ep)
    charge(expert.env_steps)                 # every env step it consumed
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np

from agents.trajectory import Episode
from envs.deadline import fault_cause
from envs.spec import TaskSpec

# controller(obs, env) -> action in the wrapped env's units ([-1, 1] for Box actions).
# It may read the simulator through `env.unwrapped` (oracle state is allowed for experts).
# An optional `reset()` method is called before every episode (for stateful controllers), and an
# optional `seed(env_seed)` (for stochastic ones).
Controller = Callable[[Any, gym.Env], Any]

MAX_FAILED_IN_A_ROW = 20  # expert attempts that may fail in a row before the source gives up


class ExpertSource:
    """Base class of expert sources.

    kind: "scripted", "filtered", "rl", "dataset", "human", ...
    policy_id: names the policy (or data set) within its kind, recorded in provenance.
    spec: the task.
    env_steps: env steps consumed so far by this source (all attempts, kept or not), so
        the cost of producing experts can be charged. Sources reading stored data add 0.
    episodes_dropped: attempts lost to an env that raised, hung or returned a non-finite
        observation or reward (the episode is dropped, the env rebuilt, another env seed taken);
        `dropped_by_cause` splits them by `envs.deadline.fault_cause`.
    """

    def __init__(self, spec: TaskSpec, kind: str, policy_id: str):
        self.spec = spec
        self.kind = kind
        self.policy_id = policy_id
        self.env_steps = 0
        self.episodes_dropped = 0
        self.dropped_by_cause: dict[str, int] = {}
        self._failed_in_a_row = 0

    def _attempt(self, env: gym.Env, controller: Controller, env_seed: int, noise: float = 0.0) -> tuple[gym.Env, tuple | None]:
        """One episode through the fault boundary: (env, run_episode's result), or (a rebuilt env,
        None) when the env raised or returned a non-finite value. RuntimeError after
        MAX_FAILED_IN_A_ROW failures in a row: the env is broken, not unlucky."""
        try:
            rollout = run_episode(env, controller, env_seed, noise, self.spec.success_key)
        except Exception as e:
            self.episodes_dropped += 1
            cause = fault_cause(e)
            self.dropped_by_cause[cause] = self.dropped_by_cause.get(cause, 0) + 1
            self._failed_in_a_row += 1
            if self._failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                raise RuntimeError(f"{self.spec.name}: {self._failed_in_a_row} expert episodes in a row failed, "
                                   f"the last with {type(e).__name__}: {e}") from None
            try:
                env.close()
            except Exception:
                pass
            return self.spec.make_env(), None
        self._failed_in_a_row = 0
        self.env_steps += len(rollout[2])
        return env, rollout

    def episodes(self, n: int, seed: int) -> Iterator[Episode]:
        """Yield n whole episodes tagged source={"kind", "policy", "seed"}."""
        raise NotImplementedError

    def _source(self, env_seed: int) -> dict:
        return {"kind": self.kind, "policy": self.policy_id, "seed": int(env_seed)}


def run_episode(
    env: gym.Env, controller: Controller, env_seed: int, noise: float = 0.0, success_key: str | None = None
) -> tuple[list, list, list, bool, bool | None]:
    """Roll `controller` for one whole episode from reset(seed=env_seed).

    The action space is seeded with the same seed, so controllers that sample it (random
    ones) are deterministic too. Returns (observations, actions, rewards, terminated, success):
    success is whether `info[success_key]` was truthy at some step (None without a key).

    `noise` > 0 perturbs the EXECUTED action (Gaussian of that std for Box actions, a
    uniform random action with that probability for Discrete) while the controller's own
    action is RECORDED (DART, Laskey et al. 2017): a precise controller otherwise never
    leaves a thin tube of states, and a policy imitating it has never seen a correction.

    FloatingPointError at the first non-finite observation or reward: the env is not stepped
    past a bad value (each fault costs one episode, like a rollout worker's step boundary).
    """
    obs, _ = env.reset(seed=int(env_seed))
    _check_finite(obs, 0.0)
    env.action_space.seed(int(env_seed))
    rng = np.random.default_rng(int(env_seed))
    box = isinstance(env.action_space, gym.spaces.Box)
    if hasattr(controller, "reset"):
        controller.reset()
    if hasattr(controller, "seed"):  # stochastic controllers draw from a stream of this episode's seed
        controller.seed(int(env_seed))
    observations, actions, rewards = [], [], []
    success = None if success_key is None else False
    while True:
        action = controller(obs, env)
        if box:
            action = np.clip(np.asarray(action, dtype=np.float32).reshape(env.action_space.shape), -1.0, 1.0)
            executed = action
            if noise > 0:
                executed = np.clip(action + rng.normal(0.0, noise, action.shape), -1.0, 1.0).astype(np.float32)
        else:
            action = int(action)
            executed = int(env.action_space.sample()) if noise > 0 and rng.random() < noise else action
        observations.append(obs)
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(executed)
        _check_finite(obs, reward)
        rewards.append(float(reward))
        if success_key is not None:
            success = success or bool(info.get(success_key, False))
        if terminated or truncated:
            return observations, actions, rewards, bool(terminated), success


def _check_finite(obs, reward) -> None:
    if not (np.isfinite(reward) and np.all(np.isfinite(obs))):
        raise FloatingPointError("non-finite observation or reward")


def to_episode(task: str, observations: list, actions: list, rewards: list, terminated: bool, source: dict,
               success: bool | None = None) -> Episode:
    """Stack per-step lists into an Episode with the agent-side dtypes."""
    obs = np.stack([np.asarray(o) for o in observations])
    if obs.dtype not in (np.float32, np.uint8):
        obs = obs.astype(np.int64 if np.issubdtype(obs.dtype, np.integer) else np.float32)
    if isinstance(actions[0], np.ndarray):
        acts = np.stack(actions).astype(np.float32)  # (T, A)
    else:
        acts = np.asarray(actions, dtype=np.int64)  # (T,)
    return Episode(
        task=task,
        observations=obs,
        actions=acts,
        rewards=np.asarray(rewards, dtype=np.float32),
        terminated=terminated,
        source=source,
        success=success,
    )


def random_controller(obs: Any, env: gym.Env) -> Any:
    """Uniform random actions from the (seeded) action space."""
    return env.action_space.sample()


class PolicyExpert(ExpertSource):
    """Rolls a controller: hand-engineered controllers now, trained RL policies later.

    `noise` > 0 collects DART-style data (see `run_episode`); the provenance records it.
    """

    def __init__(self, spec: TaskSpec, controller: Controller, kind: str, policy_id: str, noise: float = 0.0):
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        super().__init__(spec, kind, policy_id)
        self.controller = controller
        self.noise = noise

    def _source(self, env_seed: int) -> dict:
        return {**super()._source(env_seed), "noise": self.noise} if self.noise else super()._source(env_seed)

    def episodes(self, n: int, seed: int) -> Iterator[Episode]:
        """Env seeds seed, seed + 1, ...; a dropped attempt's seed is skipped."""
        env = self.spec.make_env()
        try:
            yielded, s = 0, seed
            while yielded < n:
                env, rollout = self._attempt(env, self.controller, s, self.noise)
                s += 1
                if rollout is None:
                    continue
                yielded += 1
                yield to_episode(self.spec.name, *rollout[:4], self._source(s - 1), rollout[4])
        finally:
            env.close()


class FilteredExpert(ExpertSource):
    """Many cheap attempts, keep the best: imitation data without any expert policy.

    Attempts run in pools of `pool_size`; attempt i of a call uses env seed `seed + i`. From
    each pool the top `max(1, round(keep_fraction * pool_size))` episodes by return are
    yielded (best first) until n are out. Only the kept episodes of a pool are held in
    memory. `env_steps` counts every attempt, kept or not.
    """

    def __init__(
        self,
        spec: TaskSpec,
        keep_fraction: float = 0.1,
        pool_size: int = 20,
        controller: Controller | None = None,
        policy_id: str | None = None,
    ):
        if not 0.0 < keep_fraction <= 1.0:
            raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        base = "uniform-random" if controller is None else getattr(controller, "__name__", type(controller).__name__)
        super().__init__(spec, "filtered", policy_id or f"{base}-top{keep_fraction:g}-of-{pool_size}")
        self.keep_fraction = keep_fraction
        self.pool_size = pool_size
        self.controller = controller or random_controller
        self.keep_per_pool = max(1, round(keep_fraction * pool_size))

    def episodes(self, n: int, seed: int) -> Iterator[Episode]:
        env = self.spec.make_env()
        attempt = 0
        yielded = 0
        try:
            while yielded < n:
                kept: list[tuple[float, int, tuple]] = []  # (return, env seed, rollout), best first
                for _ in range(self.pool_size):
                    s = seed + attempt
                    attempt += 1
                    env, rollout = self._attempt(env, self.controller, s)
                    if rollout is None:  # a dropped attempt is not a candidate
                        continue
                    ret = float(np.sum(rollout[2]))
                    kept.append((ret, s, rollout))
                    # Ties go to the earlier attempt, so the choice is deterministic.
                    kept.sort(key=lambda k: (-k[0], k[1]))
                    del kept[self.keep_per_pool :]
                for ret, s, rollout in kept:
                    if yielded == n:
                        break
                    yielded += 1
                    yield to_episode(self.spec.name, *rollout[:4], self._source(s), rollout[4])
        finally:
            env.close()


def filtered(spec: TaskSpec) -> FilteredExpert:
    """Default filtered source for TaskSpec.experts: top 10% of uniform-random attempts."""
    return FilteredExpert(spec)
