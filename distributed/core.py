"""Core: the learner service and the replay store, the two components that hold a run's state
(its weights and optimizer state; its data). They are placed together, given together what a
checkpoint would otherwise carry (observation statistics, the return head's range, init_from),
and rebuilt together when either is lost: a new store refilled from replay/, a new learner loaded
from the newest intact checkpoint. The held-out data the learner measures and the task shares the
store samples by (replay.task_sampling) are set here too.

    core = Core(executor, cfg, infos, run_dir, state)
    core.place()                       # core.learner, core.replay: typed handles
    core.restore_store(strict)         # after a crash or stop: replay/ back in
    core.rebuild(ckpt, strict)         # after `core.lost()` named one of them
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from frontier.agents.spaces import Box
from frontier.distributed.config import RunConfig
from frontier.distributed.data_stats import observation_stats, return_stats
from frontier.distributed.executor import Executor, LearnerSpec
from frontier.distributed.replay import nll_weights
from frontier.distributed.run_files import RunState

# replay.task_sampling val_nll: weight of the previous moving average of a task's held-out NLL
# against a new measurement (between measurements 250 updates apart the NLL of a near-deterministic
# fit moves by nats).
VAL_NLL_DECAY = 0.5


class Core:
    """The learner and the replay store of a run (see the module docstring)."""

    def __init__(self, executor: Executor, cfg: RunConfig, infos, run_dir: Path, state: RunState):
        self.ex, self.cfg, self.infos, self.run_dir, self.state = executor, cfg, infos, Path(run_dir), state
        self.learner = self.replay = None

    def _do(self, call):
        return self.ex.get(call)

    def place(self) -> None:
        cfg = self.cfg
        self.replay = self.ex.replay_store(self.infos, cfg.replay.capacity, cfg.replay.offline_share,
                                           cfg.model.context_len, cfg.replay.task_weights,
                                           str(self.run_dir / "replay"), seed=cfg.seed, eviction=cfg.replay.eviction,
                                           holdout_share=cfg.replay.holdout_share)
        learner_cfg = cfg.learner
        if not learner_cfg.decay_updates:  # the schedule's decay spans the offline phase
            learner_cfg = dataclasses.replace(learner_cfg, decay_updates=cfg.train.pretrain_updates)
        self.learner = self.ex.learner_service(self.replay, LearnerSpec(
            cfg.model, self.infos, learner_cfg, cfg.seed, cfg.train.batch_size, cfg.rollout.weights_every,
            frozen_trunk=cfg.train.freeze_trunk))

    def stats(self) -> dict:
        """The replay store's stats, per task."""
        return self._do(self.replay.stats())

    def restore_store(self, strict: bool) -> int:
        """Refill the store from replay/ (after a crash or stop); returns the episodes restored."""
        restored, quarantined = self._do(self.replay.restore(strict))
        self.state.shards_quarantined += quarantined
        # Expert data acknowledged before a crash is in replay/: never collect it twice.
        self.state.experts_done |= any(v["offline_timesteps"] for v in self.stats().values())
        return restored

    def lost(self) -> str | None:
        """"learner" or "replay store" if the executor shows that actor dead, else None."""
        for name, actor in (("learner", self.learner), ("replay store", self.replay)):
            if self.ex.dead(actor):
                return name
        return None

    def rebuild(self, ckpt: Path | None, strict: bool) -> None:
        """Kill both, place new ones, refill the store from replay/ and load the learner from `ckpt`."""
        for actor in (self.learner, self.replay):
            self.ex.kill(actor, restart=False)
        self.place()
        self.restore_store(strict)
        if ckpt is not None:
            self._do(self.learner.load(str(ckpt)))

    def initialize(self) -> None:
        """What a checkpoint would carry: observation statistics of the vector tasks and the return
        head's range from the store, and init_from."""
        vector = [i for i, t in enumerate(self.infos) if isinstance(t.observation, Box) and not t.observation.is_image]
        stats = {i: observation_stats(self._do(self.replay.episodes(self.infos[i].name))) for i in vector}
        self._do(self.learner.set_observation_stats(stats))
        if self.cfg.model.return_head:
            self._do(self.learner.set_return_stats(
                {i: return_stats(self._do(self.replay.episodes(t.name)), t.reward_scale)
                 for i, t in enumerate(self.infos)}))
        if self.cfg.init_from:
            self._do(self.learner.init_from(self.cfg.init_from, self.cfg.init_task_map))

    def prepare(self) -> None:
        """Before training: the held-out batch the learner measures (and selects by), and the task
        shares the last measurements set (replay.task_sampling val_nll; none yet in a new run)."""
        t = self.cfg.train
        self._do(self.learner.set_holdout(self._do(self.replay.holdout()), t.val_every, t.select == "val"))
        if self.state.task_weights:
            self._do(self.replay.set_task_weights(self.state.task_weights))

    def reweight_tasks(self, measurements: list[dict]) -> dict[str, float]:
        """replay.task_sampling val_nll: fold the held-out NLLs measured into their moving average
        (VAL_NLL_DECAY per measurement) and give the store the shares that follow; returns them."""
        s, r = self.state, self.cfg.replay
        for per_task in measurements:
            for task, m in per_task.items():
                s.val_nll[task] = VAL_NLL_DECAY * s.val_nll.get(task, m["nll"]) + (1 - VAL_NLL_DECAY) * m["nll"]
        s.task_weights = nll_weights(s.val_nll, self.cfg.tasks, r.task_sampling_floor, r.task_sampling_temperature)
        self._do(self.replay.set_task_weights(s.task_weights))
        return s.task_weights
