"""The training run's one loop, over either executor:

    summary = Trainer(cfg, run_dir, LocalExecutor()).run()   # distributed/local_executor.py: one process
    summary = Trainer(cfg, run_dir, RayExecutor()).run()     # distributed/ray_executor.py: Ray actors
                                                             # (RayExecutor(address): a running cluster)

`Trainer` runs the schedule (distributed/schedule.py says when to train, explore, evaluate and
checkpoint): expert collection, offline pretraining, online rounds, evaluations, checkpoints, the
wall and FLOPs budgets, TensorBoard and summary.json. Its parts: the learner service and the
replay store (distributed/core.py: Core, placed, initialized and rebuilt together), the rollout
actors (distributed/rollout_group.py: RolloutGroup, which alone knows which are up), and the
run's files and counters (distributed/run_files.py). The executor (distributed/executor.py:
Executor) only places the components and carries the calls to them: it hands back a typed handle
per component whose methods send that component's calls (`self.learner.train(n, left)`) and
return calls in flight, for `wait` and `get` as Ray's. In process a call runs when it is waited
for, in the order calls were made, so a serial run is the same schedule done one step at a time;
on Ray the calls run at once.

Flow: experts -> observation statistics -> offline pretraining -> online: every exploration
worker collects `explore_steps_per_round` env steps per call (whole episodes, straight to the
replay store, with the newest weights), rate-limited to `explore_steps_per_round` per
`updates_per_round` online updates; the learner trains in chunks that end at the next weights
publication (`rollout.weights_every`), evaluation, checkpoint, round or phase boundary;
evaluation runs on the eval workers every `train.eval_every` updates (not at the last update:
the final evaluation is that one); checkpoints every `checkpoint_every` updates; a final
evaluation; model.safetensors.

Faults of rollout actors (elastic, as RLlib's env runners): distributed/rollout_group.py.

The learner and the replay store hold the run's state, so a lost one is rebuilt by the trainer,
not restarted: when a call fails and the executor shows either dead, the trainer waits for the
rollout calls in flight (what they hand to the store is persisted before it is acknowledged),
kills both, places new ones, refills the store from `replay/` and loads the learner from the
newest intact checkpoint, then goes on with the schedule from that checkpoint's update
(`faults.core_restores`, `faults.updates_redone`; the learner's compute counters go back with it).

The run directory and its files: distributed/run_files.py.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from frontier.distributed import config as config_mod
from frontier.distributed.config import RunConfig
from frontier.distributed.core import Core
from frontier.distributed.data_stats import rollout_targets
from frontier.distributed.executor import Executor
from frontier.distributed.monitor import Monitor, write_json_atomic
from frontier.distributed.rollout_group import POLL_S, RolloutGroup
from frontier.distributed.run_files import (RunState, append_jsonl, eval_line, latest_checkpoint, one_line_error,
                                            read_run_state, sigterm_interrupts, write_checkpoint)
from frontier.distributed.schedule import checkpoint_due, evaluation_due, next_chunk, planned_updates
from frontier.envs.registry import get_task
from frontier.envs.references import reference_returns

# Seconds to wait at the end for in-flight exploration chunks (their episodes are already acknowledged).
DRAIN_S = 60.0
# Times in a run (resumes included) the trainer rebuilds a lost learner or replay store before it gives the run up.
MAX_CORE_RESTORES = 3
# RunState counters of the learner's work: a rebuilt learner takes them from its checkpoint.
LEARNER_COUNTERS = ("updates", "learner_device_s", "learner_flops", "trained_timesteps")


class Trainer:
    """The run: its directory, counters, checkpoints, monitoring, summary.json, and the schedule,
    over `executor` (see the module docstring)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, executor: Executor, resume: bool = False,
                 live: bool | None = None, strict: bool = False):
        self.cfg = cfg
        self.ex = executor
        self.strict = strict  # --resume: an unreadable replay shard stops the run instead of being quarantined
        self.run_dir = Path(run_dir)
        self.specs = [get_task(n) for n in cfg.tasks]
        self.infos = [s.info() for s in self.specs]
        self.state = RunState()
        skipped: list[tuple[Path, str]] = []
        self.resume_from = latest_checkpoint(self.run_dir, skipped) if resume else None
        for ckpt, why in skipped:
            print(f"resume: skipping checkpoint {ckpt.name}: {why}", file=sys.stderr, flush=True)
        if self.resume_from is not None:
            self.state = read_run_state(self.resume_from)
        if not resume:
            config_mod.save(cfg, self.run_dir / "config.yaml")
        # Measured references (tasks whose spec lacks them) stay with the run, so resume reuses them.
        self.references = {s.name: reference_returns(s, cache=self.run_dir / "references.json") for s in self.specs}
        self.monitor = Monitor(self.run_dir, self.references, purge_step=self.state.env_steps if resume else None,
                               live=live)
        self._t0 = time.monotonic() - self.state.wall_s
        self._last_summary = 0.0
        self._train = None  # the learner's in-flight train call, if any
        self.selected: dict | None = None  # train.select "val": {"updates", "val_nll"} of the final policy
        self.core = Core(executor, cfg, self.infos, self.run_dir, self.state)
        self.rollouts = RolloutGroup(executor, cfg, self.specs, self.state, self.record_episodes,
                                     lambda: self.targets("explore"))
        self._needs_init = self.resume_from is None  # observation statistics and init_from (a checkpoint has both)
        self._restarts_before = self.state.actor_restarts  # restarts of earlier sessions of a resumed run
        try:
            self.ex.connect(cfg)
            self.core.place()
            self.rollouts.replay = self.replay
            if resume:
                restored = self.core.restore_store(self.strict)
                if self.state.replay_rng is not None:  # the sampling stream goes on where it was
                    self._do(self.replay.set_rng_state(self.state.replay_rng))
                if self.resume_from is not None:
                    self.state.updates = self._do(self.learner.load(str(self.resume_from)))
                print(f"resumed {self.run_dir}: {self.state.updates} updates, {restored} episodes restored",
                      flush=True)
        except BaseException:
            self.monitor.close()
            self.ex.shutdown()
            raise

    # -- basics --------------------------------------------------------------------------

    @property
    def planned_updates(self) -> int:
        return planned_updates(self.cfg)

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._t0

    def _do(self, call):
        """Wait for `call` (a handle's call: `self._do(self.replay.stats())`); its result."""
        return self.ex.get(call)

    @property
    def learner(self):
        return self.core.learner

    @property
    def replay(self):
        return self.core.replay

    def out_of_budget(self) -> bool:
        budget = self.cfg.train.max_learner_flops
        return bool(budget) and self.state.learner_flops >= budget

    # -- files and counters --------------------------------------------------------------

    def checkpoint(self) -> Path:
        """Write ckpt-<updates>/ atomically (temporary directory, then rename); keep the last few."""
        # After Ctrl-C or SIGTERM a train call may still be running: book it first (the learner
        # finishes it), so the checkpoint's compute counters agree with the updates it holds.
        if self._train is not None:
            self._trained(self.ex.get(self._train), "stop", schedule=False)
        self.state.wall_s = self.wall_s
        self.state.replay_rng = self._do(self.replay.rng_state())
        return write_checkpoint(self.run_dir, self.state, lambda d: self._do(self.learner.save(d)))

    def _count_restarts(self) -> None:
        """Rollout actor restarts, as the executor records them."""
        try:
            current = self.rollouts.restarts()
        except Exception:  # Ray already shut down: keep the last count
            return
        self.state.actor_restarts = self._restarts_before + current

    def write_summary(self, status: str, **extra) -> dict:
        self._count_restarts()
        s = self.state
        s.wall_s = self.wall_s
        self.monitor.throughput(s.rates(s.wall_s), s.env_steps)
        data = self.monitor.summary(status, s.env_steps, s.updates, s.wall_s, s.compute(), s.faults())
        if extra:
            data.update(extra)
            write_json_atomic(self.run_dir / "summary.json", data)
        self._last_summary = time.monotonic()
        return data

    def targets(self, mode: str) -> dict[str, float] | None:
        """Return targets for rollout `mode` (data_stats.rollout_targets)."""
        return rollout_targets(self.cfg.train, self.specs, self.references, self._replay_stats, mode)

    def record_episodes(self, episodes, kind: str, targets: dict[str, float] | None = None,
                        at: dict | None = None) -> None:
        """Log the returns of evaluation ("eval") or exploration ("explore") episodes. An
        evaluation is logged at `at`, the counters when it started (`RunState.counters`), so its point
        is that of the weights it evaluated however long it ran beside training; its line in
        evals.jsonl records the return targets it was conditioned on (`targets`, the tasks' own
        where absent), so `frontier eval` can condition alike."""
        at = at or self.state.counters()
        line = eval_line(episodes, at, {spec.name: (targets or {}).get(spec.name, spec.return_target("eval"))
                                        for spec in self.specs})
        for task, r in line["returns"].items():
            if kind == "eval":
                self.monitor.evaluation(task, r, at["env_steps"], line.get("successes", {}).get(task))
            else:
                self.monitor.exploration(task, r, at["env_steps"])
        if kind == "eval":
            append_jsonl(self.run_dir / "evals.jsonl", line)

    def _tick(self, phase: str) -> None:
        s = self.state
        self.monitor.status(phase, s.updates, self.planned_updates, s.env_steps, self.wall_s)
        if time.monotonic() - self._last_summary > self.cfg.summary_every_s:
            self.monitor.replay(self._replay_stats(), s.env_steps)
            self.write_summary("running")

    def _replay_stats(self) -> dict:
        return self.core.stats()

    def _restore_core(self, lost: str, error: Exception) -> None:
        """Rebuild the learner and the store after `lost` died (see the module docstring)."""
        s = self.state
        ckpt = latest_checkpoint(self.run_dir)
        print(f"{lost} actor lost ({type(error).__name__}): rebuilding the learner from "
              f"{ckpt.name if ckpt else 'scratch'} and the replay store from replay/", flush=True)
        self.rollouts.drain(time.monotonic() + DRAIN_S)
        self._train = None
        updates_before = s.updates
        self.core.rebuild(ckpt, self.strict)
        self.rollouts.replay = self.replay
        saved = read_run_state(ckpt) if ckpt else RunState()
        for key in LEARNER_COUNTERS:
            setattr(s, key, getattr(saved, key))
        self._needs_init = ckpt is None  # a checkpoint carries the statistics inside the model
        s.core_restores += 1
        s.updates_redone += updates_before - s.updates

    def _start_train(self) -> None:
        budget = self.cfg.train.max_learner_flops
        left = budget - self.state.learner_flops if budget else None
        self._train = self.learner.train(next_chunk(self.cfg, self.state.updates), left)

    def _trained(self, result: dict, phase: str, schedule: bool = True) -> None:
        """Book the finished train call; evaluate and checkpoint on their schedules (unless not `schedule`)."""
        self._train = None
        s = self.state
        s.updates = result["updates"]
        self.rollouts.weights = result["weights"]
        m = result["metrics"]
        s.learner_device_s += m["learner/update_s"]
        s.learner_flops += m["learner/flops"]
        s.trained_timesteps += result["trained_timesteps"]
        scalars = {k: v for k, v in m.items() if k not in ("learner/update_s", "learner/flops")}
        scalars["learner/utilization"] = s.rates(self.wall_s)["learner_utilization"]
        scalars["learner/batch_wait_s"] = result["batch_wait_s"]
        self.monitor.scalars(scalars, s.env_steps)
        for updates, per_task in result["val"]:
            self.monitor.validation(per_task, s.env_steps, updates)
        if result["val"] and self.cfg.replay.task_sampling == "val_nll":
            self.monitor.task_shares(self.core.reweight_tasks([per_task for _, per_task in result["val"]]), s.env_steps)
        if not schedule:
            return
        if evaluation_due(self.cfg, s.updates):
            self._start_eval(self.cfg.train.eval_episodes)
        if checkpoint_due(self.cfg, s.updates):
            self.checkpoint()
        self._tick(phase)

    # -- evaluation ----------------------------------------------------------------------

    def _start_eval(self, episodes: int, weights: tuple | None = None) -> None:
        """Launch an evaluation of the current weights on every eval worker (on Ray an actor still
        busy with an earlier one takes it next); the driver evaluates the groups of the actors
        that are down."""
        r = self.rollouts
        if weights is not None:  # these published weights, whatever their updates
            r.weights = weights
        elif r.weights[0] != self.state.updates:  # the newest publication is older than these updates
            r.weights = self._do(self.learner.publish())
        eid = self.state.evaluations
        self.state.evaluations += 1
        r.start_eval(eid, episodes, self.targets("eval"), self.state.counters())

    def evaluate(self, episodes: int, weights: tuple | None = None) -> None:
        """Blocking evaluation (the final one): waits for those running, then runs a fresh one.

        Meanwhile the exploration chunks still in flight land (for at most DRAIN_S): their
        episodes are in the store already, and their steps count.
        """
        r = self.rollouts
        deadline = time.monotonic() + DRAIN_S
        while r.eval_pending:
            r.settle(deadline)
        self._start_eval(episodes, weights)
        while r.eval_pending or (r.explore_pending and time.monotonic() < deadline):
            r.settle(deadline)

    # -- the run -------------------------------------------------------------------------

    def run(self) -> dict:
        try:
            return self.finish(self._loop)
        finally:
            self._stop_actors()
            self.ex.shutdown()

    def finish(self, loop) -> dict:
        """Run `loop()`, then the final summary; Ctrl-C (SIGINT) and SIGTERM checkpoint and record
        the stop ("interrupted", "terminated")."""
        with sigterm_interrupts() as signals:
            try:
                loop()
                self.checkpoint()
                return self.write_summary("finished", **({"selected": self.selected} if self.selected else {}))
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
                signals.ignore_sigterm()  # a second signal during the final checkpoint must not cut it short
                self.checkpoint()
                return self.write_summary("failed", stop_reason="terminated" if signals.terminated else "interrupted")
            except Exception as e:
                self.write_summary("failed", stop_reason=one_line_error(e))
                raise
            finally:
                self.monitor.close()

    def _stop_actors(self) -> None:
        if self.learner is not None and self.ex.connected():
            try:
                self.ex.get(self.learner.stop(), timeout=10)
            except Exception:  # the learner is gone already: nothing to stop
                pass

    def _loop(self) -> None:
        """The schedule; after a lost learner or store is rebuilt (at most MAX_CORE_RESTORES times),
        the schedule again from the update the learner came back at."""
        while True:
            try:
                return self._schedule()
            except Exception as e:
                lost = self.core.lost()
                if lost is None or self.state.core_restores >= MAX_CORE_RESTORES:
                    raise
                self._restore_core(lost, e)

    def _wait_train(self) -> None:
        """Wait for the train call in flight, booking the evaluations that finish meanwhile."""
        while True:
            ready, _ = self.ex.wait([self._train, *self.rollouts.eval_pending], num_returns=1, timeout=POLL_S)
            if self._train in ready:
                return
            self.rollouts.book(ready)
            self.rollouts.watch()

    def _schedule(self) -> None:
        cfg, s, r = self.cfg, self.state, self.rollouts
        if not r.explorers:
            r.start()
        if not s.experts_done:
            r.collect_experts(lambda: self.monitor.status("experts", 0, self.planned_updates, s.env_steps, self.wall_s))
            s.experts_done = True
        if self._needs_init:
            self.core.initialize()
            self._needs_init = False
        self.core.prepare()
        r.weights = self._do(self.learner.weights())

        # Offline pretraining: the learner alone (evaluations run beside it on their schedule).
        while s.updates < cfg.train.pretrain_updates and not self.out_of_budget():
            self._start_train()
            self._wait_train()
            self._trained(self.ex.get(self._train), "pretrain")

        # Online: exploration workers and the learner run at the same time, from the moment
        # every explorer is up (else early updates would train on expert data alone).
        r.await_explorers()
        if s.updates < self.planned_updates and not self.out_of_budget():
            r.start_exploring()
            self._start_train()
        while self._train is not None:
            ready, _ = self.ex.wait([self._train, *r.explore_pending, *r.eval_pending], num_returns=1, timeout=POLL_S)
            r.use_restored()
            r.watch()
            if self._train in ready:
                self._trained(self.ex.get(self._train), "online")
                r.explore_if_allowed()
                out_of_time = cfg.train.max_wall_s and self.wall_s > cfg.train.max_wall_s
                if not (s.updates >= self.planned_updates or out_of_time or self.out_of_budget()):
                    self._start_train()
            r.book(ready)
            self._tick("online")

        self.monitor.status("final eval", s.updates, self.planned_updates, s.env_steps, self.wall_s)
        best = cfg.train.select == "val"  # the final evaluation and model.safetensors: the policy held-out data chose
        final = self._do(self.learner.publish(best))
        if best:
            self.selected = self._do(self.learner.best())
        self.evaluate(cfg.train.final_eval_episodes, final)
        self.monitor.replay(self._replay_stats(), s.env_steps)
        self._do(self.learner.export_weights(str(self.run_dir / "model.safetensors"), best))
