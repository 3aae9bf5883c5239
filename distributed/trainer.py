"""The training run's one loop, over either executor:

    runner = SerialRunner(cfg, run_dir)                # distributed/local_executor.py: one process
    runner = RayRunner(cfg, run_dir, address=None)     # distributed/ray_executor.py: Ray actors
    summary = runner.run()

`Trainer` owns the schedule: expert collection, observation statistics, offline pretraining,
online rounds, evaluations, checkpoints, the wall and FLOPs budgets, init_from, evals.jsonl,
TensorBoard and summary.json. The executor (distributed/executor.py: Executor) only places the
components (replay store, learner service, rollout services) and carries the calls to them: it
hands back a typed handle per component whose methods send that component's calls
(`self.learner.train(n, left)`) and return calls in flight, for `wait` and `get` as Ray's. In
process a call runs when it is waited for, in the order calls were made, so a serial run is the
same schedule done one step at a time; on Ray the calls run at once.

Flow: experts -> observation statistics -> offline pretraining -> online: every exploration
worker collects `explore_steps_per_round` env steps per call (whole episodes, straight to the
replay store, with the newest weights), rate-limited to `explore_steps_per_round` per
`updates_per_round` online updates; the learner trains in chunks that end at the next weights
publication (`rollout.weights_every`), evaluation, checkpoint, round or phase boundary;
evaluation runs on the eval workers every `train.eval_every` updates (not at the last update:
the final evaluation is that one); checkpoints every `checkpoint_every` updates; a final
evaluation; model.safetensors.

Faults (elastic, as RLlib's env runners; they happen on Ray, where actors die): a rollout actor
whose call fails with the executor's `LOST` errors (its process died, its node was lost) is down.
The trainer says so in one line, counts it (`faults.rollout_actors_lost`) and works around it:
training goes on with the explorers left, or with none (the learner trains on the store); the
evaluation of its tasks, and expert collection, move to the driver (an in-process worker) or to
the actors left. Ray restarts the actor (`max_restarts=-1`) where it finds capacity, which may be
never; until then every call to it fails at once, so the trainer probes it every PROBE_S without
blocking and uses it again once a probe answers (the next call re-sends the weights). A call Ray
queued before the driver first reached the actor is not failed but kept for the restart, so every
CHECK_S the trainer cancels the calls of actors the executor shows restarting. A call that runs
past `rollout.call_timeout_s` (a step hung in C code, where the per-step deadline cannot reach)
gets its actor killed; Ray restarts it and the same path takes over
(`faults.rollout_calls_timed_out`). `actor_restarts` counts restarts as Ray records them.

The learner and the replay store hold the run's state, so a lost one is rebuilt by the trainer,
not restarted: when a call fails and the executor shows either dead, the trainer waits for the
rollout calls in flight (what they hand to the store is persisted before it is acknowledged),
kills both, places new ones, refills the store from `replay/` and loads the learner from the
newest intact checkpoint, then goes on with the schedule from that checkpoint's update
(`faults.core_restores`, `faults.updates_redone`; the learner's compute counters go back with it).

Run directory:
  config.yaml        the resolved config
  tb/                TensorBoard events
  checkpoints/       ckpt-<updates>/ (model.safetensors, learner_state.pt, run_state.json)
  replay/            persisted episodes (see distributed/replay.py)
  summary.json       rewritten periodically and at the end
  evals.jsonl        one line per evaluation: counters (updates, env steps, learner FLOPs and
                     seconds, actor CPU-s) and the returns per task, for curves against compute
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from frontier.agents.spaces import Box
from frontier.agents.storage import sha256_file
from frontier.distributed import config as config_mod
from frontier.distributed.config import RunConfig
from frontier.distributed.driver import (KEEP_CHECKPOINTS, MANIFEST_KEY, RunState, Terminated, data_targets,
                                latest_checkpoint, observation_stats, one_line_error, resolve_tasks,
                                return_stats)
from frontier.distributed.executor import Executor, LearnerSpec, RolloutHandle, RolloutSpec
from frontier.distributed.monitor import Monitor, write_json_atomic
from frontier.distributed.replay import error_weights
from frontier.envs.references import reference_returns
from frontier.envs.seeding import stream_seed

# Seconds between two looks at the in-flight calls when none has finished.
POLL_S = 1.0
# Seconds to wait at the end for in-flight exploration chunks (their episodes are already acknowledged).
DRAIN_S = 60.0
# Seconds between two probes of a lost rollout actor (a probe fails at once while it is restarting).
PROBE_S = 1.0
# Seconds between two looks at the executor's actor states for rollout calls that may wait forever.
CHECK_S = 5.0
# Times in a run (resumes included) the trainer rebuilds a lost learner or replay store before it gives the run up.
MAX_CORE_RESTORES = 3
# RunState counters of the learner's work: a rebuilt learner takes them from its checkpoint.
LEARNER_COUNTERS = ("updates", "learner_device_s", "learner_flops", "trained_timesteps")


def _next_multiple(n: int, k: int) -> int:
    return (n // k + 1) * k


class RolloutHealth:
    """Which rollout actors are up: the one place the trainer asks before it gives one work.

        health = RolloutHealth(executor, {actor: "explore-0", ...})   # RolloutHandle -> name
        health.lost(actor, "ActorUnavailableError")  # True (and one line) if it was up
        health.up(actor)
        health.restored()          # actors whose probe answered since the last look: up again
        health.stranded(actors)    # {actor: state} of those whose calls may wait forever

    A lost actor is probed with `pid` every PROBE_S; `restored` never blocks.
    """

    def __init__(self, executor: Executor, names: dict[RolloutHandle, str]):
        self.ex = executor
        self.names = names  # actor handle -> name in the trainer's lines
        self._probes: dict = {}  # lost actor -> (its probe in flight or None, when to send the next)
        self._next_check = 0.0  # when `stranded` looks at the actor states next

    def up(self, actor) -> bool:
        return actor not in self._probes

    def lost(self, actor, why: str) -> bool:
        if actor in self._probes:
            return False
        self._probes[actor] = (None, time.monotonic() + PROBE_S)
        print(f"rollout actor {self.names[actor]} lost ({why}): the run goes on without it, "
              f"its work on the actors left or the driver, until Ray restores it", flush=True)
        return True

    def stranded(self, actors) -> dict:
        """{actor: state} of those of `actors` (ones with calls in flight) that the executor shows
        restarting or dead; looks at most every CHECK_S (else {})."""
        if time.monotonic() < self._next_check:
            return {}
        self._next_check = time.monotonic() + CHECK_S
        states = {a: self.ex.actor_state(a) for a in set(actors) if self.up(a)}
        return {a: state for a, state in states.items() if state in ("RESTARTING", "DEAD")}

    def restored(self) -> list:
        """Lost actors whose probe has answered since the last call (up again); sends the probes due."""
        in_flight = [probe for probe, _ in self._probes.values() if probe is not None]
        ready = set(self.ex.wait(in_flight, num_returns=len(in_flight), timeout=0)[0]) if in_flight else set()
        now, back = time.monotonic(), []
        for actor, (probe, due) in list(self._probes.items()):
            if probe is None:
                if now >= due:
                    self._probes[actor] = (actor.pid(), due)
                continue
            if probe not in ready:
                continue
            try:
                self.ex.get(probe)
            except self.ex.LOST:
                self._probes[actor] = (None, now + PROBE_S)
                continue
            del self._probes[actor]
            print(f"rollout actor {self.names[actor]} is back", flush=True)
            back.append(actor)
        return back


class Trainer:
    """The run: its directory, counters, checkpoints, monitoring, summary.json, and the schedule,
    over `executor` (see the module docstring)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, executor: Executor, resume: bool = False,
                 live: bool | None = None, strict: bool = False):
        self.cfg = cfg
        self.ex = executor
        self.strict = strict  # --resume: an unreadable replay shard stops the run instead of being quarantined
        self.run_dir = Path(run_dir)
        self.specs = resolve_tasks(cfg.tasks)
        self.infos = [s.info() for s in self.specs]
        self.state = RunState()
        skipped: list[tuple[Path, str]] = []
        self.resume_from = latest_checkpoint(self.run_dir, skipped) if resume else None
        for ckpt, why in skipped:
            print(f"resume: skipping checkpoint {ckpt.name}: {why}", file=sys.stderr, flush=True)
        if self.resume_from is not None:
            saved = json.loads((self.resume_from / "run_state.json").read_text())
            saved.pop(MANIFEST_KEY, None)
            self.state = RunState.from_dict(saved)
        if not resume:
            config_mod.save(cfg, self.run_dir / "config.yaml")
        # Measured references (tasks whose spec lacks them) stay with the run, so resume reuses them.
        self.references = {s.name: reference_returns(s, cache=self.run_dir / "references.json") for s in self.specs}
        self.monitor = Monitor(self.run_dir, self.references, purge_step=self.state.env_steps if resume else None,
                               live=live)
        self._t0 = time.monotonic() - self.state.wall_s
        self._last_summary = 0.0
        self.explorers: list[RolloutHandle] = []
        self.evaluators: list[RolloutHandle] = []
        self.acknowledged_episodes = 0  # episodes the replay store acknowledged
        self.explore_versions: list[tuple[int, int]] = []  # (explorer, weights version) per exploration chunk
        self._train = None  # the learner's in-flight train call, if any
        self.selected: dict | None = None  # train.select "val": {"updates", "val_nll"} of the final policy
        # Evaluations started and not yet recorded, by id: {"left": groups to report, "episodes":
        # EpisodeResults so far, "weights": (version, handle), "targets", "at": the counters when started}.
        self._evals: dict[int, dict] = {}
        self._eval_pending: dict = {}  # in-flight evaluation call -> (evaluation id, eval group, episodes per task)
        self._local_workers: dict[int, object] = {}  # eval group -> its in-driver stand-in
        self._explore_pending: dict = {}  # in-flight exploration call -> explorer
        self._call_started: dict = {}  # in-flight rollout call -> when it was sent (rollout.call_timeout_s)
        self._idle_explorers: list[int] = []  # explorers waiting for the exploration rate limit
        self.health = RolloutHealth(executor, {})  # which rollout actors are up (filled as they start)
        self._needs_init = self.resume_from is None  # observation statistics and init_from (a checkpoint has both)
        self._restarts_before = self.state.actor_restarts  # restarts of earlier sessions of a resumed run
        try:
            self.ex.connect(cfg)
            self._place()
            if resume:
                restored = self._restore_store()
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
        return self.cfg.train.pretrain_updates + self.cfg.train.online_updates

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._t0

    def _do(self, call):
        """Wait for `call` (a handle's call: `self._do(self.replay.stats())`); its result."""
        return self.ex.get(call)

    def vector_tasks(self) -> list[int]:
        """Indices of the tasks with vector observations (normalized with the expert data's statistics)."""
        return [i for i, t in enumerate(self.infos) if isinstance(t.observation, Box) and not t.observation.is_image]

    def out_of_budget(self) -> bool:
        budget = self.cfg.train.max_learner_flops
        return bool(budget) and self.state.learner_flops >= budget

    # -- placement -----------------------------------------------------------------------

    def _place(self) -> None:
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

    def _explore_spec(self, i: int) -> RolloutSpec:
        """Explorer i's worker: every task, envs_per_worker rounded up to a multiple of the tasks."""
        cfg = self.cfg
        n = len(cfg.tasks)
        per_worker = max(1, math.ceil(cfg.rollout.envs_per_worker / n)) * n
        return RolloutSpec(cfg.tasks, cfg.model, "explore", per_worker, cfg.seed, worker_index=i)

    def _eval_spec(self, i: int) -> RolloutSpec:
        """Eval group i's worker: every evaluation episode of its tasks side by side (one batched
        forward per step)."""
        cfg = self.cfg
        group = cfg.tasks[i::cfg.rollout.eval_workers]
        episodes = max(cfg.train.eval_episodes, cfg.train.final_eval_episodes)
        return RolloutSpec(cfg.tasks, cfg.model, "eval", episodes * len(group), cfg.seed,
                           worker_index=cfg.rollout.explore_workers + i, tasks=group)

    def _start_rollouts(self) -> None:
        r = self.cfg.rollout
        self.explorers = [self.ex.rollout_service(self._explore_spec(i)) for i in range(r.explore_workers)]
        # Eval workers split the tasks between them.
        self.evaluators = [self.ex.rollout_service(self._eval_spec(i))
                           for i in range(min(r.eval_workers, len(self.cfg.tasks)))]
        self.health = RolloutHealth(self.ex, {**{a: f"explore-{i}" for i, a in enumerate(self.explorers)},
                                              **{a: f"eval-{i}" for i, a in enumerate(self.evaluators)}})

    def _local_worker(self, i: int):
        """Eval group i's in-driver stand-in (built once), for work whose actor is down."""
        if i not in self._local_workers:
            self._local_workers[i] = self.ex.local_service(self._eval_spec(i))
        return self._local_workers[i]

    def _restore_store(self) -> int:
        """Refill the store from replay/ (after a crash or stop); returns the episodes restored."""
        restored, quarantined = self._do(self.replay.restore(self.strict))
        self.state.shards_quarantined += quarantined
        # Expert data acknowledged before a crash is in replay/: never collect it twice.
        self.state.experts_done |= any(v["offline_timesteps"] for v in self._replay_stats().values())
        return restored

    def _core_lost(self) -> str | None:
        """"learner" or "replay store" if the executor shows that actor dead, else None."""
        for name, actor in (("learner", self.learner), ("replay store", self.replay)):
            if self.ex.dead(actor):
                return name
        return None

    def _restore_core(self, lost: str, error: Exception) -> None:
        """Rebuild the learner and the store after `lost` died (see the module docstring)."""
        s = self.state
        ckpt = latest_checkpoint(self.run_dir)
        print(f"{lost} actor lost ({type(error).__name__}): rebuilding the learner from "
              f"{ckpt.name if ckpt else 'scratch'} and the replay store from replay/", flush=True)
        self._drain_rollouts()
        for actor in (self.learner, self.replay):
            self.ex.kill(actor, restart=False)
        self._train = None
        self._place()
        self._restore_store()
        updates_before = s.updates
        saved = json.loads((ckpt / "run_state.json").read_text()) if ckpt else {}
        for key in LEARNER_COUNTERS:
            setattr(s, key, type(getattr(s, key))(saved.get(key, 0)))
        if ckpt is not None:
            self._do(self.learner.load(str(ckpt)))
        self._needs_init = ckpt is None  # a checkpoint carries the statistics inside the model
        s.core_restores += 1
        s.updates_redone += updates_before - s.updates

    def _drain_rollouts(self) -> None:
        """Book the evaluation calls in flight, and the exploration calls that land within DRAIN_S
        (the rest are cancelled: what they stored is in replay/, their steps go uncounted)."""
        deadline = time.monotonic() + DRAIN_S
        while self._eval_pending or (self._explore_pending and time.monotonic() < deadline):
            self._settle(deadline)
        for ref in self._explore_pending:
            self.ex.cancel(ref)
            self._call_started.pop(ref, None)
        self._explore_pending.clear()
        self._idle_explorers = []

    # -- files and counters --------------------------------------------------------------

    def checkpoint(self) -> Path:
        """Write ckpt-<updates>/ atomically (temporary directory, then rename); keep the last few."""
        # After Ctrl-C or SIGTERM a train call may still be running: book it first (the learner
        # finishes it), so the checkpoint's compute counters agree with the updates it holds.
        if self._train is not None:
            self._trained(self.ex.get(self._train), "stop", schedule=False)
        self.state.wall_s = self.wall_s
        root = self.run_dir / "checkpoints"
        final = root / f"ckpt-{self.state.updates:08d}"
        tmp = root / f".tmp-{self.state.updates:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self._do(self.learner.save(str(tmp)))
        self.state.replay_rng = self._do(self.replay.rng_state())
        manifest = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                    for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json_atomic(tmp / "run_state.json", {**self.state.to_dict(), MANIFEST_KEY: manifest})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(root.glob("ckpt-*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _rates(self) -> dict[str, float]:
        wall = max(self.wall_s, 1e-9)
        s = self.state
        return {
            "env_steps_per_s": s.env_steps / wall,
            "updates_per_s": s.updates / wall,
            "trained_timesteps_per_s": s.trained_timesteps / wall,
            "learner_utilization": s.learner_device_s / wall,
        }

    def _count_restarts(self) -> None:
        """Rollout actor restarts, as the executor records them."""
        try:
            current = sum(self.ex.restarts(a) for a in self.explorers + self.evaluators)
        except Exception:  # Ray already shut down: keep the last count
            return
        self.state.actor_restarts = self._restarts_before + current

    def write_summary(self, status: str, **extra) -> dict:
        self._count_restarts()
        s = self.state
        s.wall_s = self.wall_s
        self.monitor.throughput(self._rates(), s.env_steps)
        compute = {"learner_device_s": s.learner_device_s, "learner_flops": s.learner_flops,
                   "actor_cpu_s": s.actor_cpu_s, "env_steps_by_source": dict(s.env_steps_by_source)}
        faults = {"actor_restarts": s.actor_restarts, "rollout_actors_lost": s.rollout_actors_lost,
                  "rollout_calls_timed_out": s.rollout_calls_timed_out,
                  "episodes_dropped": s.episodes_dropped, "episodes_dropped_by_cause": dict(s.episodes_dropped_by_cause),
                  "replay_shards_quarantined": s.shards_quarantined, "core_restores": s.core_restores,
                  "updates_redone": s.updates_redone}
        data = self.monitor.summary(status, s.env_steps, s.updates, s.wall_s, compute, faults)
        if extra:
            data.update(extra)
            write_json_atomic(self.run_dir / "summary.json", data)
        self._last_summary = time.monotonic()
        return data

    def targets(self, stats, mode: str) -> dict[str, float] | None:
        """Return targets for rollout `mode` under `train.return_targets` (None: the tasks' own);
        `stats()` gives the replay store's stats, asked for only when the targets need them."""
        if self.cfg.train.return_targets == "task":
            return None
        if self.cfg.train.return_targets == "state":  # each episode's from its first observation
            return {spec.name: None for spec in self.specs}
        t = self.cfg.train
        scale = t.eval_target_scale if mode == "eval" else t.explore_target_scale
        return data_targets(self.specs, self.references, stats(), mode, t.return_targets, scale)

    def counters(self) -> dict:
        """The counters an evaluation's line in evals.jsonl carries (those of the weights it evaluates)."""
        s = self.state
        return {"updates": s.updates, "env_steps": s.env_steps, "learner_flops": s.learner_flops,
                "learner_device_s": s.learner_device_s, "actor_cpu_s": s.actor_cpu_s}

    def record_episodes(self, episodes, kind: str, targets: dict[str, float] | None = None,
                        at: dict | None = None) -> None:
        """Log the returns of evaluation ("eval") or exploration ("explore") episodes. An
        evaluation is logged at `at`, the counters when it started (`counters()`), so its point
        is that of the weights it evaluated however long it ran beside training; its line in
        evals.jsonl records the return targets it was conditioned on (`targets`, the tasks' own
        where absent), so `frontier eval` can condition alike."""
        at = at or self.counters()
        returns: dict[str, list[float]] = {}
        successes: dict[str, list[bool]] = {}  # tasks with a success condition only
        for e in episodes:
            returns.setdefault(e.task, []).append(e.ret)
            if e.success is not None:
                successes.setdefault(e.task, []).append(bool(e.success))
        for task, r in returns.items():
            if kind == "eval":
                self.monitor.evaluation(task, r, at["env_steps"], successes.get(task))
            else:
                self.monitor.exploration(task, r, at["env_steps"])
        if kind == "eval":
            line = {**at, "returns": returns,
                    "targets": {spec.name: (targets or {}).get(spec.name, spec.return_target("eval"))
                                for spec in self.specs}}
            if successes:
                line["successes"] = successes
            with open(self.run_dir / "evals.jsonl", "a") as f:
                f.write(json.dumps(line) + "\n")

    def account(self, before: dict, after: dict, source: str) -> None:
        """Charge a rollout worker's counters (env steps, CPU, dropped episodes) between two readings."""
        self.state.add_steps(source, after["env_steps"] - before["env_steps"])
        self.state.actor_cpu_s += after["cpu_s"] - before["cpu_s"]
        self.state.add_dropped({c: n - before["dropped_by_cause"].get(c, 0) for c, n in after["dropped_by_cause"].items()})

    def _tick(self, phase: str) -> None:
        s = self.state
        self.monitor.status(phase, s.updates, self.planned_updates, s.env_steps, self.wall_s)
        if time.monotonic() - self._last_summary > self.cfg.summary_every_s:
            self.monitor.replay(self._replay_stats(), s.env_steps)
            self.write_summary("running")

    def _replay_stats(self) -> dict:
        return self._do(self.replay.stats())

    # -- rollout calls and faults --------------------------------------------------------

    def _lost(self, actor, why: str) -> None:
        """`actor` is down until its probe answers (see RolloutHealth)."""
        if self.health.lost(actor, why):
            self.state.rollout_actors_lost += 1

    def _rollout_calls(self) -> dict:
        """{call: actor} of the exploration and evaluation calls in flight."""
        return {**{ref: self.explorers[i] for ref, i in self._explore_pending.items()},
                **{ref: self.evaluators[i] for ref, (_, i, _) in self._eval_pending.items()}}

    def _sent(self, ref):
        """Note when the rollout call `ref` was sent (for rollout.call_timeout_s); returns it."""
        self._call_started[ref] = time.monotonic()
        return ref

    def _watch_calls(self, calls: dict) -> None:
        """Of the rollout calls in flight ({call: actor}): kill the actor of one past
        `rollout.call_timeout_s` (hung), and cancel those of actors the executor shows restarting
        or dead (see RolloutHealth). Either way the calls come back failed and their work moves.
        In process a call runs only when waited for: nothing to watch."""
        if not self.ex.remote:
            return
        timeout, now = self.cfg.rollout.call_timeout_s, time.monotonic()
        overdue = {a for ref, a in calls.items() if timeout and now - self._call_started.get(ref, now) > timeout}
        for actor in overdue:
            print(f"rollout actor {self.health.names[actor]}: a call ran past rollout.call_timeout_s "
                  f"({timeout:g} s); killing it (Ray restarts it)", flush=True)
            self.state.rollout_calls_timed_out += 1
            for ref in [r for r, a in calls.items() if a == actor]:
                self._call_started.pop(ref, None)
            self.ex.kill(actor, restart=True)
        for actor, state in self.health.stranded(calls.values()).items():
            self._lost(actor, f"Ray shows it {state.lower()}")
            for ref in [r for r, a in calls.items() if a == actor]:
                self.ex.cancel(ref)

    # -- the pieces ----------------------------------------------------------------------

    def collect_experts(self) -> None:
        """One call per task, spread over the rollout workers that are up (explore and eval), straight
        into the store; in the driver while none is up."""
        cfg = self.cfg
        pending = {}

        def book(kind: str, n: int, counts: dict) -> None:
            self.state.add_steps(kind, counts["env_steps"])
            self.state.actor_cpu_s += counts["cpu_s"]
            self.state.add_dropped(counts["dropped_by_cause"])
            self.acknowledged_episodes += n

        def submit(i: int) -> None:
            spec = self.specs[i]
            kind = cfg.experts.sources.get(spec.name, cfg.experts.source)
            args = (spec.name, kind, cfg.experts.episodes, stream_seed("expert", cfg.seed, spec.name))
            up = [a for a in self.explorers + self.evaluators if self.health.up(a)]
            if not up:  # the in-driver worker writes into the store itself
                book(kind, *self._local_worker(0).collect_expert_into(self.replay.target, *args))
                return
            actor = up[i % len(up)]
            pending[self._sent(actor.collect_expert_into(self.replay, *args))] = (i, kind, actor)

        for i in range(len(self.specs)):
            submit(i)
        while pending:
            ready, _ = self.ex.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                i, kind, actor = pending.pop(ref)
                self._call_started.pop(ref, None)
                try:
                    book(kind, *self.ex.get(ref))
                except self.ex.LOST as e:
                    if isinstance(e, self.ex.TASK_ERROR):  # the actor is up; its call to the store failed
                        raise
                    self._lost(actor, type(e).__name__)
                    submit(i)
            self._watch_calls({ref: actor for ref, (_, _, actor) in pending.items()})
            self.monitor.status("experts", 0, self.planned_updates, self.state.env_steps, self.wall_s)
        self.state.experts_done = True

    def initialize_learner(self) -> None:
        """What a checkpoint would carry: observation statistics from the store, and init_from."""
        stats = {i: observation_stats(self._do(self.replay.episodes(self.infos[i].name)))
                 for i in self.vector_tasks()}
        self._do(self.learner.set_observation_stats(stats))
        if self.cfg.model.return_head:
            self._do(self.learner.set_return_stats(
                {i: return_stats(self._do(self.replay.episodes(t.name)), t.reward_scale)
                 for i, t in enumerate(self.infos)}))
        if self.cfg.init_from:
            self._do(self.learner.init_from(self.cfg.init_from, self.cfg.init_task_map))

    def _chunk(self) -> int:
        """Updates in the next train call: up to the next weights, evaluation, checkpoint, round or
        phase boundary."""
        cfg, u = self.cfg, self.state.updates
        stops = [self.planned_updates, _next_multiple(u, cfg.rollout.weights_every),
                 _next_multiple(u, cfg.train.eval_every), _next_multiple(u, cfg.checkpoint_every)]
        if u < cfg.train.pretrain_updates:
            stops.append(cfg.train.pretrain_updates)
        else:
            pre = cfg.train.pretrain_updates
            stops.append(pre + _next_multiple(u - pre, cfg.train.updates_per_round))
        return min(stops) - u

    def _start_train(self) -> None:
        budget = self.cfg.train.max_learner_flops
        left = budget - self.state.learner_flops if budget else None
        self._train = self.learner.train(self._chunk(), left)

    def _trained(self, result: dict, phase: str, schedule: bool = True) -> None:
        """Book the finished train call; evaluate and checkpoint on their schedules (unless not `schedule`)."""
        self._train = None
        s = self.state
        s.updates = result["updates"]
        self._weights = result["weights"]
        m = result["metrics"]
        s.learner_device_s += m["learner/update_s"]
        s.learner_flops += m["learner/flops"]
        s.trained_timesteps += result["trained_timesteps"]
        scalars = {k: v for k, v in m.items() if k not in ("learner/update_s", "learner/flops")}
        scalars["learner/utilization"] = self._rates()["learner_utilization"]
        scalars["learner/batch_wait_s"] = result["batch_wait_s"]
        self.monitor.scalars(scalars, s.env_steps)
        for updates, per_task in result["val"]:
            self.monitor.validation(per_task, s.env_steps, updates)
        if result["val"] and self.cfg.replay.task_sampling == "val_error":
            errors = {task: m["action_error"] for task, m in result["val"][-1][1].items()}
            s.task_weights = error_weights(errors, self.cfg.tasks, self.cfg.replay.task_sampling_floor)
            self._do(self.replay.set_task_weights(s.task_weights))
            self.monitor.task_shares(s.task_weights, s.env_steps)
        if not schedule:
            return
        if s.updates % self.cfg.train.eval_every == 0 and s.updates < self.planned_updates:
            self._start_eval(self.cfg.train.eval_episodes)
        if s.updates % self.cfg.checkpoint_every == 0:
            self.checkpoint()
        self._tick(phase)

    # -- evaluation ----------------------------------------------------------------------

    def _start_eval(self, episodes: int, weights: tuple | None = None) -> None:
        """Launch an evaluation of the current weights on every eval worker (on Ray an actor still
        busy with an earlier one takes it next); the driver evaluates the groups of the actors
        that are down."""
        if weights is not None:  # these published weights, whatever their updates
            self._weights = weights
        elif self._weights[0] != self.state.updates:  # the newest publication is older than these updates
            self._weights = self._do(self.learner.publish())
        eid = self.state.evaluations
        self.state.evaluations += 1
        version, box = self._weights
        targets = self.targets(self._replay_stats, "eval")
        self._evals[eid] = {"left": len(self.evaluators), "episodes": [], "weights": self._weights,
                            "targets": targets, "at": self.counters()}
        down = []
        for i, actor in enumerate(self.evaluators):
            if self.health.up(actor):
                call = actor.evaluate_with(episodes, version, box, targets, eid)
                self._eval_pending[self._sent(call)] = (eid, i, episodes)
            else:
                down.append(i)
        for i in down:  # after the remote calls, so they run meanwhile
            self._book_eval(eid, self._evaluate_in_driver(eid, i, episodes))

    def _evaluate_in_driver(self, eid: int, i: int, episodes: int) -> dict:
        """Eval group i's share of evaluation `eid`, run here (blocking): its actor is down."""
        ev = self._evals[eid]
        return self._local_worker(i).evaluate_with(episodes, *ev["weights"], ev["targets"], eid)

    def _eval_done(self, ref) -> None:
        eid, i, episodes = self._eval_pending.pop(ref)
        self._call_started.pop(ref, None)
        try:
            out = self.ex.get(ref)
        except self.ex.LOST as e:
            self._lost(self.evaluators[i], type(e).__name__)
            out = self._evaluate_in_driver(eid, i, episodes)
        self._book_eval(eid, out)

    def _book_eval(self, eid: int, out: dict) -> None:
        self.account(out["before"], out["after"], "eval")
        ev = self._evals[eid]
        ev["episodes"].extend(out["episodes"])
        ev["left"] -= 1
        if ev["left"] == 0:  # every group reported: one evaluation point for all tasks
            self.record_episodes(ev["episodes"], "eval", ev["targets"], at=ev["at"])
            del self._evals[eid]

    def evaluate(self, episodes: int, weights: tuple | None = None) -> None:
        """Blocking evaluation (the final one): waits for those running, then runs a fresh one.

        Meanwhile the exploration chunks still in flight land (for at most DRAIN_S): their
        episodes are in the store already, and their steps count.
        """
        deadline = time.monotonic() + DRAIN_S
        while self._eval_pending:
            self._settle(deadline)
        self._start_eval(episodes, weights)
        while self._eval_pending or (self._explore_pending and time.monotonic() < deadline):
            self._settle(deadline)

    def _settle(self, deadline: float) -> None:
        """Book whichever evaluation call, or exploration call before `deadline`, finishes next."""
        refs = [*self._eval_pending, *(self._explore_pending if time.monotonic() < deadline else ())]
        if not refs:
            return
        ready, _ = self.ex.wait(refs, num_returns=1, timeout=POLL_S)
        for ref in ready:
            if ref in self._explore_pending:
                self._explore_done(ref, resubmit=False)
            else:
                self._eval_done(ref)
        self._watch_calls(self._rollout_calls())

    # -- exploration ---------------------------------------------------------------------

    def _start_explore(self, i: int) -> None:
        version, box = self._weights
        call = self.explorers[i].collect_into(self.replay, self.cfg.train.explore_steps_per_round, version, box,
                                              self.targets(self._replay_stats, "explore"))
        self._explore_pending[self._sent(call)] = i

    def _may_explore(self) -> bool:
        """The exploration rate limit: one more chunk only while the steps collected (and in
        flight) stay within `explore_steps_per_round` per `updates_per_round` online updates.
        Actors running flat out would flood the store with exploration data and change what the
        learner trains on with the machine's speed."""
        t = self.cfg.train
        rounds = max(0, self.state.updates - t.pretrain_updates) // t.updates_per_round + 1
        collected = self.state.env_steps_by_source.get("explore", 0) + len(self._explore_pending) * t.explore_steps_per_round
        return collected < rounds * t.explore_steps_per_round

    def _use_restored(self) -> None:
        """Explorers restored wait for the rate limit again; eval actors take the next evaluation."""
        for actor in self.health.restored():
            if actor in self.explorers:
                self._idle_explorers.append(self.explorers.index(actor))
        self._explore_if_allowed()

    def _explore_if_allowed(self) -> None:
        """Start waiting explorers while the rate limit allows."""
        while self._idle_explorers and self._may_explore():
            self._start_explore(self._idle_explorers.pop(0))

    def _explore_done(self, ref, resubmit: bool) -> None:
        i = self._explore_pending.pop(ref)
        self._call_started.pop(ref, None)
        try:
            out = self.ex.get(ref)
        except self.ex.LOST as e:
            if isinstance(e, self.ex.TASK_ERROR):  # the actor is up; its call to the store failed (the store is lost)
                return
            # The actor died (process killed, node lost): what it had not yet handed to the
            # replay store is lost; it explores again once it is restored (_use_restored).
            self._lost(self.explorers[i], type(e).__name__)
            return
        self.account(out["before"], out["after"], "explore")
        self.acknowledged_episodes += out["acknowledged"]
        self.explore_versions.append((i, out["weights_version"]))
        self.record_episodes(out["episodes"], "explore")
        if resubmit:
            self._idle_explorers.append(i)
            self._explore_if_allowed()

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
        main_thread = threading.current_thread() is threading.main_thread()
        terminated = []

        def on_sigterm(signum, frame):
            terminated.append(True)
            raise Terminated()

        previous = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
        try:
            loop()
            self.checkpoint()
            return self.write_summary("finished", **({"selected": self.selected} if self.selected else {}))
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
            if main_thread:  # a second signal during the final checkpoint must not cut it short
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.checkpoint()
            return self.write_summary("failed", stop_reason="terminated" if terminated else "interrupted")
        except Exception as e:
            self.write_summary("failed", stop_reason=one_line_error(e))
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
            self.monitor.close()

    def _stop_actors(self) -> None:
        if hasattr(self, "learner") and self.ex.connected():
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
                lost = self._core_lost()
                if lost is None or self.state.core_restores >= MAX_CORE_RESTORES:
                    raise
                self._restore_core(lost, e)

    def _wait_train(self) -> None:
        """Wait for the train call in flight, booking the evaluations that finish meanwhile."""
        while True:
            ready, _ = self.ex.wait([self._train, *self._eval_pending], num_returns=1, timeout=POLL_S)
            if self._train in ready:
                return
            for ref in ready:
                self._eval_done(ref)
            self._watch_calls(self._rollout_calls())

    def _schedule(self) -> None:
        cfg, s = self.cfg, self.state
        if not self.explorers:
            self._start_rollouts()
        if not s.experts_done:
            self.collect_experts()
        if self._needs_init:
            self.initialize_learner()
            self._needs_init = False
        self._do(self.learner.set_holdout(self._do(self.replay.holdout()), cfg.train.val_every, cfg.train.select == "val"))
        if s.task_weights:  # replay.task_sampling val_error: the shares the last validation set
            self._do(self.replay.set_task_weights(s.task_weights))
        self._weights = self._do(self.learner.weights())

        # Offline pretraining: the learner alone (evaluations run beside it on their schedule).
        while s.updates < cfg.train.pretrain_updates and not self.out_of_budget():
            self._start_train()
            self._wait_train()
            self._trained(self.ex.get(self._train), "pretrain")

        # Online: exploration workers and the learner run at the same time, from the moment
        # every explorer is up (else early updates would train on expert data alone).
        probes = {a.pid(): a for a in self.explorers if self.health.up(a)}
        while probes:
            ready, _ = self.ex.wait(list(probes), num_returns=len(probes), timeout=POLL_S)
            for ref in ready:
                try:
                    self.ex.get(ref)
                except self.ex.LOST as e:
                    self._lost(probes[ref], type(e).__name__)
                del probes[ref]
            self._watch_calls(probes)
        if s.updates < self.planned_updates and not self.out_of_budget():
            self._idle_explorers = [i for i, a in enumerate(self.explorers) if self.health.up(a)]
            self._explore_if_allowed()
            self._start_train()
        while self._train is not None:
            ready, _ = self.ex.wait([self._train, *self._explore_pending, *self._eval_pending], num_returns=1,
                                    timeout=POLL_S)
            self._use_restored()
            self._watch_calls(self._rollout_calls())
            for ref in ready:
                if ref == self._train:
                    self._trained(self.ex.get(self._train), "online")
                    self._explore_if_allowed()
                    out_of_time = cfg.train.max_wall_s and self.wall_s > cfg.train.max_wall_s
                    if not (s.updates >= self.planned_updates or out_of_time or self.out_of_budget()):
                        self._start_train()
                elif ref in self._explore_pending:
                    self._explore_done(ref, resubmit=True)
                else:
                    self._eval_done(ref)
            self._tick("online")

        self.monitor.status("final eval", s.updates, self.planned_updates, s.env_steps, self.wall_s)
        best = cfg.train.select == "val"  # the final evaluation and model.safetensors: the policy held-out data chose
        final = self._do(self.learner.publish(best))
        if best:
            self.selected = self._do(self.learner.best())
        self.evaluate(cfg.train.final_eval_episodes, final)
        self.monitor.replay(self._replay_stats(), s.env_steps)
        self._do(self.learner.export_weights(str(self.run_dir / "model.safetensors"), best))
