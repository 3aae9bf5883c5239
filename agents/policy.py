"""Batched acting with a `DecisionTransformer` over many environment slots of any tasks.

Usage (one rollout worker, `n` envs):
    policy = Policy(model, tasks, num_slots=n, seed=0)
    policy.reset(slot, task_index, target_return)        # at each episode start
    actions = policy.act(slots, observations, deterministic=False)
    ... step the envs ...
    policy.rewards(slots, rewards)                      # before the next act

Each slot keeps its last K steps in preallocated ring buffers; one `act` call runs one
forward pass for all the given slots, whatever their tasks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from agents.model import DecisionTransformer
from agents.spaces import Box, TaskInfo


class Policy:
    """Acts for `num_slots` environment slots with `model`, which it moves to `device`.

    Share the learner's model object only when both run on the same device; otherwise
    give the policy its own copy and feed it `load_weights`.
    """

    def __init__(
        self,
        model: DecisionTransformer,
        tasks: Sequence[TaskInfo],
        num_slots: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        if [t.name for t in tasks] != [t.name for t in model.tasks]:
            raise ValueError(f"policy tasks {[t.name for t in tasks]} differ from the model's {[t.name for t in model.tasks]}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tasks = list(tasks)
        self.num_slots = num_slots
        self.K = model.cfg.context_len
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        K = self.K
        self._reward_scale = np.array([t.reward_scale for t in tasks], dtype=np.float32)  # (n_tasks,)
        self._task = np.full(num_slots, -1, dtype=np.int64)  # -1: slot not reset yet
        self._count = np.zeros(num_slots, dtype=np.int64)  # steps appended this episode
        self._rtg = np.zeros(num_slots, dtype=np.float32)  # current return-to-go, scaled
        self._t = np.zeros(num_slots, dtype=np.int64)  # current timestep
        self._rtg_ring = np.zeros((num_slots, K), dtype=np.float32)
        self._t_ring = np.zeros((num_slots, K), dtype=np.int64)
        # Observation and action rings differ in shape between tasks: one array per slot,
        # reallocated only when a slot switches to a task of another shape.
        self._obs_ring: list[np.ndarray | None] = [None] * num_slots
        self._act_ring: list[np.ndarray | None] = [None] * num_slots

    def _ring_shapes(self, task_index: int) -> tuple[tuple, np.dtype, tuple, np.dtype]:
        t = self.tasks[task_index]
        if isinstance(t.observation, Box):
            obs_shape, obs_dtype = (self.K, *t.observation.shape), np.dtype(t.observation.dtype)
        else:
            obs_shape, obs_dtype = (self.K,), np.dtype(np.int64)
        if t.continuous:
            return obs_shape, obs_dtype, (self.K, t.action.dim), np.dtype(np.float32)
        return obs_shape, obs_dtype, (self.K,), np.dtype(np.int64)

    def reset(self, slot: int, task_index: int, target_return: float):
        """Start a new episode of task `task_index` in `slot`, conditioned on `target_return` (unscaled)."""
        if not 0 <= slot < self.num_slots:
            raise ValueError(f"slot {slot} outside [0, {self.num_slots})")
        if not 0 <= task_index < len(self.tasks):
            raise ValueError(f"task index {task_index} outside [0, {len(self.tasks)})")
        obs_shape, obs_dtype, act_shape, act_dtype = self._ring_shapes(task_index)
        ring = self._obs_ring[slot]
        if ring is None or ring.shape != obs_shape or ring.dtype != obs_dtype:
            self._obs_ring[slot] = np.zeros(obs_shape, dtype=obs_dtype)
        ring = self._act_ring[slot]
        if ring is None or ring.shape != act_shape or ring.dtype != act_dtype:
            self._act_ring[slot] = np.zeros(act_shape, dtype=act_dtype)
        self._task[slot] = task_index
        self._count[slot] = 0
        self._rtg[slot] = target_return * self.tasks[task_index].reward_scale
        self._t[slot] = 0

    def _window(self, slot: int, length: int) -> np.ndarray:
        """Ring positions of the slot's last `length` steps, oldest first."""
        n = self._count[slot]
        return (np.arange(n - length, n)) % self.K

    @torch.inference_mode()
    def act(self, slots: Sequence[int], observations: Sequence[np.ndarray], deterministic: bool) -> list:
        """Append o_t to each slot's context and return a_t for each: np.float32 (A,) in [-1, 1] or int."""
        if len(slots) != len(observations):
            raise ValueError(f"{len(slots)} slots but {len(observations)} observations")
        if len(slots) == 0:
            return []
        self.model.eval()  # the model may be shared with a learner that left it in train mode
        slots = np.asarray(slots, dtype=np.int64)
        if len(np.unique(slots)) != len(slots):
            raise ValueError(f"slots repeat in {slots.tolist()}")
        for s in slots:
            if not 0 <= s < self.num_slots or self._task[s] < 0:
                raise ValueError(f"slot {s} was not reset")
        for s, obs in zip(slots, observations):
            pos = self._count[s] % self.K
            self._obs_ring[s][pos] = obs
            self._rtg_ring[s, pos] = self._rtg[s]
            self._t_ring[s, pos] = self._t[s]
            self._count[s] += 1

        # Rows sorted by task, each slot's context left-aligned and right-padded to the
        # longest one: causal attention keeps padding out of every real step's hidden state.
        order = np.argsort(self._task[slots], kind="stable")  # (S,)
        row_slots = slots[order]
        task = self._task[row_slots]  # (S,)
        lengths = np.minimum(self._count[row_slots], self.K)  # (S,)
        L = int(lengths.max())
        S = len(row_slots)
        rtg = np.zeros((S, L), dtype=np.float32)
        timesteps = np.zeros((S, L), dtype=np.int64)
        obs_by_task: dict[int, np.ndarray] = {}
        act_by_task: dict[int, np.ndarray] = {}
        rows_by_task: dict[int, np.ndarray] = {}
        for i in np.unique(task):
            i = int(i)
            rows = np.flatnonzero(task == i)
            obs_shape, obs_dtype, act_shape, act_dtype = self._ring_shapes(i)
            obs = np.zeros((len(rows), L, *obs_shape[1:]), dtype=obs_dtype)
            act = np.zeros((len(rows), L, *act_shape[1:]), dtype=act_dtype)
            for r, row in enumerate(rows):
                s, n = row_slots[row], lengths[row]
                window = self._window(s, n)
                obs[r, :n] = self._obs_ring[s][window]
                act[r, :n] = self._act_ring[s][window]
                rtg[row, :n] = self._rtg_ring[s, window]
                timesteps[row, :n] = self._t_ring[s, window]
            obs_by_task[i], act_by_task[i], rows_by_task[i] = obs, act, rows

        dev = self.device
        hidden = self.model(
            torch.from_numpy(task).to(dev),
            {i: torch.from_numpy(o).to(dev) for i, o in obs_by_task.items()},
            {i: torch.from_numpy(a).to(dev) for i, a in act_by_task.items()},
            torch.from_numpy(rtg).to(dev),
            torch.from_numpy(timesteps).to(dev),
            rows={i: torch.from_numpy(r).to(dev) for i, r in rows_by_task.items()},
        )  # (S, L, C)
        last = hidden[torch.arange(S, device=dev), torch.from_numpy(lengths - 1).to(dev)]  # (S, C)

        out: list = [None] * len(slots)
        for i, rows in rows_by_task.items():
            dist = self.model.action_distribution(i, last[torch.from_numpy(rows).to(dev)])
            a = (dist.mode() if deterministic else dist.sample(self.generator)).cpu().numpy()
            for r, row in enumerate(rows):
                s = row_slots[row]
                self._act_ring[s][(self._count[s] - 1) % self.K] = a[r]  # the next step's previous action
                action = a[r].astype(np.float32) if self.tasks[i].continuous else int(a[r])
                out[order[row]] = action
        return out

    def rewards(self, slots: Sequence[int], rewards: Sequence[float]):
        """Account the rewards of the last actions: rtg -= reward * reward_scale, timestep += 1."""
        if len(slots) != len(rewards):
            raise ValueError(f"{len(slots)} slots but {len(rewards)} rewards")
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) == 0:
            return
        if np.any(self._task[slots] < 0):
            raise ValueError(f"slots {slots[self._task[slots] < 0].tolist()} were not reset")
        self._rtg[slots] -= np.asarray(rewards, dtype=np.float32) * self._reward_scale[self._task[slots]]
        self._t[slots] += 1

    def load_weights(self, state_dict: dict[str, torch.Tensor]):
        self.model.load_state_dict(state_dict)
        self.model.eval()
