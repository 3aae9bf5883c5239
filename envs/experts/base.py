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

from frontier.agents.trajectory import Episode
from frontier.envs.env_pool import EnvPool, Tally
from frontier.envs.spec import TaskSpec

# controller(obs, env) -> action in the wrapped env's units ([-1, 1] for Box actions).
# It may read the simulator through `env.unwrapped` (oracle state is allowed for experts).
# An optional `reset()` method is called before every episode (for stateful controllers), and an
# optional `seed(env_seed)` (for stochastic ones).
Controller = Callable[[Any, gym.Env], Any]

class ExpertSource:
    """Base class of expert sources.

    kind: "scripted", "filtered", "rl", "dataset", "human", ...
    policy_id: names the policy (or data set) within its kind, recorded in provenance.
    spec: the task.
    tally: what its env pools counted (envs.env_pool.Tally): `env_steps` consumed so far (all
        attempts, kept, dropped or not), so the cost of producing experts can be charged (sources
        reading stored data add 0); `episodes_dropped`, attempts lost to an env that raised, hung
        or returned a non-finite observation or reward (the episode is dropped, the env rebuilt,
        another env seed taken: envs/env_pool.py, the rollout worker's fault boundary), split by
        `envs.deadline.fault_cause` in `dropped_by_cause`.
    """

    def __init__(self, spec: TaskSpec, kind: str, policy_id: str):
        self.spec = spec
        self.kind = kind
        self.policy_id = policy_id
        self.tally = Tally()

    @property
    def env_steps(self) -> int:
        """Env steps consumed so far (`tally.env_steps`)."""
        return self.tally.env_steps

    def episodes(self, n: int, seed: int) -> Iterator[Episode]:
        """Yield n whole episodes tagged source={"kind", "policy", "seed"}."""
        raise NotImplementedError

    def _source(self, env_seed: int) -> dict:
        return {"kind": self.kind, "policy": self.policy_id, "seed": int(env_seed)}

    def _attempts(self, controller: Controller, first_seed: int, noise: float = 0.0
                  ) -> Iterator[tuple[int, Episode | None]]:
        """(env seed, episode) of `controller` for env seeds first_seed, first_seed + 1, ... without
        end; the episode is None where the env failed it (dropped, counted, the env rebuilt).

        Every episode starts from reset(seed=its env seed), and the action space is seeded with it,
        so controllers that sample it (random ones) are deterministic too. `noise` > 0 perturbs
        the EXECUTED action (Gaussian of that std for Box actions, a uniform random action with
        that probability for Discrete) while the controller's own action is RECORDED (DART,
        Laskey et al. 2017): a precise controller otherwise never leaves a thin tube of states,
        and a policy imitating it has never seen a correction.
        """
        pool = EnvPool([self.spec], [0], seed_base=None, tally=self.tally)
        box = isinstance(pool.env(0).action_space, gym.spaces.Box)
        seed = first_seed
        try:
            while True:
                obs = pool.begin(0, reset_seed=seed)
                if obs is None:  # the reset failed: dropped, counted, the env rebuilt
                    yield seed, None
                    seed += 1
                    continue
                rng = np.random.default_rng(seed)
                if hasattr(controller, "reset"):
                    controller.reset()
                if hasattr(controller, "seed"):  # stochastic controllers draw from a stream of this episode's seed
                    controller.seed(seed)
                while True:
                    env = pool.env(0)
                    action = controller(obs, env)
                    if box:
                        action = np.clip(np.asarray(action, dtype=np.float32).reshape(env.action_space.shape), -1.0, 1.0)
                        executed = action
                        if noise > 0:
                            executed = np.clip(action + rng.normal(0.0, noise, action.shape), -1.0, 1.0).astype(np.float32)
                    else:
                        action = int(action)
                        executed = int(env.action_space.sample()) if noise > 0 and rng.random() < noise else action
                    _, _, finished, failed = pool.step([0], [action], [executed])
                    if failed:
                        yield seed, None
                        break
                    if finished:
                        episode = finished[0][1]
                        episode.source = self._source(seed)
                        yield seed, episode
                        break
                    obs = pool.current(0)
                seed += 1
        finally:
            pool.close()



def random_controller(obs: Any, env: gym.Env) -> Any:
    """Uniform random actions from the (seeded) action space."""
    return env.action_space.sample()


class PolicyExpert(ExpertSource):
    """Rolls a controller: hand-engineered controllers now, trained RL policies later.

    `noise` > 0 collects DART-style data (see `ExpertSource._attempts`); the provenance records it.
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
        if n <= 0:
            return
        attempts = self._attempts(self.controller, seed, self.noise)
        try:
            yielded = 0
            for _, episode in attempts:
                if episode is not None:
                    yield episode
                    yielded += 1
                    if yielded == n:
                        return
        finally:
            attempts.close()


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
        attempts = self._attempts(self.controller, seed)
        try:
            yielded = 0
            while yielded < n:
                kept: list[tuple[float, int, Episode]] = []  # (return, env seed, episode), best first
                for _ in range(self.pool_size):
                    s, episode = next(attempts)
                    if episode is None:  # a dropped attempt is not a candidate
                        continue
                    kept.append((float(np.sum(episode.rewards, dtype=np.float64)), s, episode))
                    # Ties go to the earlier attempt, so the choice is deterministic.
                    kept.sort(key=lambda k: (-k[0], k[1]))
                    del kept[self.keep_per_pool :]
                for _, _, episode in kept:
                    if yielded == n:
                        break
                    yielded += 1
                    yield episode
        finally:
            attempts.close()


def filtered(spec: TaskSpec) -> FilteredExpert:
    """Default filtered source for TaskSpec.experts: top 10% of uniform-random attempts."""
    return FilteredExpert(spec)
