"""Batched acting with a `DecisionTransformer` over many environment slots of any tasks.

Usage (one rollout worker, `n` envs):
    policy = Policy(model, tasks, num_slots=n, seed=0)
    policy.reset(slot, task_index, target_return)        # at each episode start
    actions = policy.act(slots, observations, deterministic=False)
    ... step the envs ...
    policy.rewards(slots, rewards)                      # before the next act

Each slot keeps its last K steps in preallocated ring buffers; one `act` call runs one
forward pass for all the given slots, whatever their tasks.

Inference modes (`inference=`):
- "last" (default, exact): the whole window goes through every block but the last; the
  last block computes keys and values for the window and everything else (query,
  projection, MLP, final norm) for the newest step only, the one the action comes from.
  Token embeddings are computed once per step and kept per ring position (the previous
  action's apart, as window position 0 gets `no_action` instead); new weights recompute them.
- "full" (exact): the model's own forward over the whole window; the reference "last" is
  tested against.
Both use the model's own code (`DecisionTransformer.embed_tokens`, `.transform`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from frontier.agents.model import DecisionTransformer
from frontier.agents.spaces import Box, TaskInfo

INFERENCE_MODES = ("last", "full")


class Policy:
    """Acts for `num_slots` environment slots with `model`, which it moves to `device`.

    Share the learner's model object only when both run on the same device; otherwise
    give the policy its own copy. Either way, hand it new weights through `load_weights`:
    it drops what the policy cached from the old ones.
    """

    def __init__(
        self,
        model: DecisionTransformer,
        tasks: Sequence[TaskInfo],
        num_slots: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
        inference: str = "last",
    ):
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        if [t.name for t in tasks] != [t.name for t in model.tasks]:
            raise ValueError(f"policy tasks {[t.name for t in tasks]} differ from the model's {[t.name for t in model.tasks]}")
        if inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {', '.join(INFERENCE_MODES)}, got {inference!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tasks = list(tasks)
        self.num_slots = num_slots
        self.inference = inference
        self.K = model.cfg.context_len
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        K = self.K
        self._reward_scale = np.array([t.reward_scale for t in tasks], dtype=np.float32)  # (n_tasks,)
        self._task = np.full(num_slots, -1, dtype=np.int64)  # -1: slot not reset yet
        self._count = np.zeros(num_slots, dtype=np.int64)  # steps appended this episode
        self._rtg = np.zeros(num_slots, dtype=np.float32)  # current return-to-go, scaled
        self._predict = np.zeros(num_slots, dtype=bool)  # target from the return head at the first step
        self._t = np.zeros(num_slots, dtype=np.int64)  # current timestep
        self._rtg_ring = np.zeros((num_slots, K), dtype=np.float32)
        self._t_ring = np.zeros((num_slots, K), dtype=np.int64)
        # Observation and action rings differ in shape between tasks: one array per slot,
        # reallocated only when a slot switches to a task of another shape.
        self._obs_ring: list[np.ndarray | None] = [None] * num_slots
        self._act_ring: list[np.ndarray | None] = [None] * num_slots
        if inference == "last":
            C = model.cfg.embed_dim
            # Per ring position: the step's token embedding without its previous action
            # (observation, return-to-go, timestep, task), and the embedding of the action taken there.
            self._tok = torch.zeros(num_slots, K, C, device=self.device)  # (slots, K, C)
            self._act_emb = torch.zeros(num_slots, K, C, device=self.device)  # (slots, K, C)
            self._emb_fresh = np.zeros(num_slots, dtype=bool)  # embeddings match the current weights

    def _ring_shapes(self, task_index: int) -> tuple[tuple, np.dtype, tuple, np.dtype]:
        t = self.tasks[task_index]
        if isinstance(t.observation, Box):
            obs_shape, obs_dtype = (self.K, *t.observation.shape), np.dtype(t.observation.dtype)
        else:
            obs_shape, obs_dtype = (self.K,), np.dtype(np.int64)
        if t.continuous:
            return obs_shape, obs_dtype, (self.K, t.action.dim), np.dtype(np.float32)
        return obs_shape, obs_dtype, (self.K,), np.dtype(np.int64)

    def reset(self, slot: int, task_index: int, target_return: float | None):
        """Start a new episode of task `task_index` in `slot`, conditioned on `target_return`
        (unscaled), or with None on the model's return head's prediction for its first observation."""
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
        if target_return is None and not len(self.model.return_heads):
            raise ValueError("a predicted return target needs a model with a return head (model.return_head)")
        self._predict[slot] = target_return is None
        self._rtg[slot] = 0.0 if target_return is None else target_return * self.tasks[task_index].reward_scale
        self._t[slot] = 0
        if self.inference == "last":
            self._emb_fresh[slot] = True

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
        if self.model.training:  # the model may be shared with a learner that left it in train mode
            self.model.eval()
        slots = np.asarray(slots, dtype=np.int64)
        if len(np.unique(slots)) != len(slots):
            raise ValueError(f"slots repeat in {slots.tolist()}")
        for s in slots:
            if not 0 <= s < self.num_slots or self._task[s] < 0:
                raise ValueError(f"slot {s} was not reset")
        self._predict_targets(slots, observations)
        for s, obs in zip(slots, observations):
            pos = self._count[s] % self.K
            self._obs_ring[s][pos] = obs
            self._rtg_ring[s, pos] = self._rtg[s]
            self._t_ring[s, pos] = self._t[s]
            self._count[s] += 1

        # Rows sorted by task: the model embeds each task's rows together.
        order = np.argsort(self._task[slots], kind="stable")  # (S,)
        row_slots = slots[order]
        last = self._hidden(row_slots)  # (S, C)

        dev = self.device
        task = self._task[row_slots]
        out: list = [None] * len(slots)
        for i in np.unique(task):
            i = int(i)
            rows = np.flatnonzero(task == i)
            dist = self.model.action_distribution(i, last[torch.from_numpy(rows).to(dev)])
            a_t = dist.mode() if deterministic else dist.sample(self.generator)
            if self.inference == "last":
                s_rows = row_slots[rows]
                self._act_emb[s_rows, (self._count[s_rows] - 1) % self.K] = self.model.embed_actions(i, a_t)
            a = a_t.cpu().numpy()
            continuous = self.tasks[i].continuous
            for r, row in enumerate(rows):
                s = row_slots[row]
                self._act_ring[s][(self._count[s] - 1) % self.K] = a[r]  # the next step's previous action
                out[order[row]] = a[r].astype(np.float32) if continuous else int(a[r])
        return out

    def _predict_targets(self, slots: np.ndarray, observations: Sequence[np.ndarray]) -> None:
        """Set the return-to-go of the slots whose episode waits for a predicted target (reset with
        None) from the return head on their first observation."""
        waiting = np.flatnonzero(self._predict[slots])
        for i in np.unique(self._task[slots[waiting]]):
            rows = waiting[self._task[slots[waiting]] == i]
            obs = torch.from_numpy(np.stack([observations[r] for r in rows])).to(self.device)[:, None]  # (P, 1, ...)
            self._rtg[slots[rows]] = self.model.predict_return(int(i), obs)[:, 0].cpu().numpy()
        self._predict[slots[waiting]] = False

    # -- window inference ("full", "last") ------------------------------------------------

    def _window_inputs(self, row_slots: np.ndarray, lengths: np.ndarray) -> tuple:
        """Each slot's context left-aligned and right-padded to the longest one: causal
        attention keeps padding out of every real step's hidden state."""
        task = self._task[row_slots]  # (S,)
        L, S = int(lengths.max()), len(row_slots)
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
        return (
            torch.from_numpy(task).to(dev),
            {i: torch.from_numpy(o).to(dev) for i, o in obs_by_task.items()},
            {i: torch.from_numpy(a).to(dev) for i, a in act_by_task.items()},
            torch.from_numpy(rtg).to(dev),
            torch.from_numpy(timesteps).to(dev),
            {i: torch.from_numpy(r).to(dev) for i, r in rows_by_task.items()},
        )

    def _hidden(self, row_slots: np.ndarray) -> torch.Tensor:
        """Hidden state (S, C) of each slot's newest step, from its whole window."""
        lengths = np.minimum(self._count[row_slots], self.K)  # (S,)
        last = torch.from_numpy(lengths - 1).to(self.device)  # (S,) each row's newest position
        if self.inference == "full":
            hidden = self.model(*self._window_inputs(row_slots, lengths))  # (S, L, C)
            return hidden[torch.arange(len(row_slots), device=self.device), last]
        x = self._cached_embeddings(row_slots, lengths)  # (S, L, C)
        # Every row as long as the longest: each newest step is the window's last, no gather or mask.
        return self.model.transform(x, -1 if np.all(lengths == lengths[0]) else last)  # (S, C)

    def _cached_embeddings(self, row_slots: np.ndarray, lengths: np.ndarray) -> torch.Tensor:
        """Token embeddings (S, L, C) of each slot's window, left-aligned, from the per-step cache.

        Embeds each slot's newest step, or its whole window where new weights made the cache
        stale; padding positions hold whatever the ring holds (causal attention ignores them).
        """
        m, dev, K = self.model, self.device, self.K
        L = int(lengths.max())
        counts = self._count[row_slots]  # (S,)
        # (slot, ring position) pairs to embed: the newest step, or the whole window if stale.
        stale = ~self._emb_fresh[row_slots]
        n_new = np.where(stale, lengths, 1)  # (S,)
        pair_slot = np.repeat(row_slots, n_new)  # (P,)
        k = np.arange(n_new.sum()) - np.repeat(np.cumsum(n_new) - n_new, n_new)  # (P,) 0.. within each slot
        pair_pos = (np.repeat(counts - n_new, n_new) + k) % K  # (P,)
        pair_task = self._task[pair_slot]  # (P,)
        tok = torch.empty(len(pair_slot), m.cfg.embed_dim, device=dev)  # (P, C)
        for i in np.unique(pair_task):
            i = int(i)
            sel = np.flatnonzero(pair_task == i)
            obs = np.stack([self._obs_ring[s][p] for s, p in zip(pair_slot[sel], pair_pos[sel])])  # (P_i, ...)
            sel_t = torch.from_numpy(sel).to(dev)
            tok[sel_t] = m.embed_observations(i, torch.from_numpy(obs).to(dev)[:, None])[:, 0].float()
            # Actions of the window's older steps (the newest step's is embedded once chosen).
            old = sel[pair_pos[sel] != (self._count[pair_slot[sel]] - 1) % K]
            if len(old):
                acts = np.stack([self._act_ring[s][p] for s, p in zip(pair_slot[old], pair_pos[old])])
                self._act_emb[pair_slot[old], pair_pos[old]] = m.embed_actions(i, torch.from_numpy(acts).to(dev))
        rtg = torch.from_numpy(self._rtg_ring[pair_slot, pair_pos]).to(dev)  # (P,)
        t = torch.from_numpy(self._t_ring[pair_slot, pair_pos]).to(dev)  # (P,)
        tok = tok + m.condition_embedding(rtg, t, torch.from_numpy(pair_task).to(dev))  # (P, C)
        self._tok[pair_slot, pair_pos] = tok
        self._emb_fresh[row_slots] = True
        # Window j of row r is ring position (count - length + j) % K; position 0 gets no_action.
        ring = (counts[:, None] - lengths[:, None] + np.arange(L)[None]) % K  # (S, L)
        slot_idx = torch.from_numpy(row_slots).to(dev)[:, None]  # (S, 1)
        ring_t = torch.from_numpy(ring).to(dev)
        x = self._tok[slot_idx, ring_t]  # (S, L, C)
        prev = self._act_emb[slot_idx, (ring_t - 1) % K]  # (S, L, C): the action before each step
        prev[:, 0] = m.no_action
        return x + prev

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
        if self.inference == "last":
            self._emb_fresh[:] = False  # cached embeddings came from the old weights

