"""The training run on Ray: the serial runner's pieces as actors, working at the same time.

    runner = RayRunner(cfg, run_dir, resume=False, address=None)   # None: embedded local Ray
    summary = runner.run()

Placement (custom resources, so one file serves a laptop and a cluster; see cluster.yaml):
- replay store: a threaded actor (many writers and the learner's prefetch at once), no CPU,
  a sliver of `frontier_learner`, so it sits on the learner's node next to `replay/`;
- learner: `LearnerService`, one GPU when the cluster has one, a sliver of `frontier_learner`;
- rollout actors (explore and eval modes): one CPU and one `frontier_rollout` each, spread
  over the nodes, restarted by Ray when they die (`max_restarts=-1`);
- expert collection: one call per task name, spread over the rollout actors, writing into the
  replay store.

Flow: experts -> observation statistics -> offline pretraining -> online: every exploration
actor loops `collect_into` (whole episodes in chunks, straight to the replay store, with the
newest weights reference) while the learner trains in chunks of at most `weights_every`
updates, rate-limited to the configured ratio of exploration steps to online updates
(`explore_steps_per_round` per `updates_per_round`, as the serial runner); evaluation runs on the eval actors every `train.eval_every` updates without stopping
training; checkpoints every `checkpoint_every` updates; a final evaluation; model.safetensors.

Faults (elastic, as RLlib's env runners): a rollout actor whose call fails with `RayActorError`
(its process died, its node was lost) is down. The driver says so in one line, counts it
(`faults.rollout_actors_lost`) and works around it: training goes on with the explorers left, or
with none (the learner trains on the store); the evaluation of its tasks, and expert collection,
move to the driver (an in-process worker) or to the actors left. Ray restarts the actor
(`max_restarts=-1`) where it finds capacity, which may be never; until then every call to it
fails at once (`max_task_retries=0`), so the driver probes it every PROBE_S without blocking and
uses it again once a probe answers (the next call re-sends the weights). A call Ray queued
before the driver first reached the actor is not failed but kept for the restart, so every
CHECK_S the driver cancels the calls of actors Ray's control store shows restarting. A call that
runs past `rollout.call_timeout_s` (a step hung in C code, where the per-step deadline cannot
reach) gets its actor killed; Ray restarts it and the same path takes over
(`faults.rollout_calls_timed_out`).
`actor_restarts` counts restarts as Ray's control store records them, so one death is one
restart however many calls it fails.

The learner and the replay store hold the run's state, so a lost one is rebuilt by the driver,
not restarted by Ray: when a call fails and Ray shows either actor dead, the driver waits for the
rollout calls in flight (what they hand to the store is persisted before it is acknowledged),
kills both, places new ones, refills the store from `replay/` and loads the learner from the
newest intact checkpoint, then goes on with the schedule from that checkpoint's update
(`faults.core_restores`, `faults.updates_redone`; the learner's compute counters go back with it).
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, TaskCancelledError

from distributed.config import RunConfig
from distributed.driver import Runner, latest_checkpoint, observation_stats
from distributed.learner_service import LearnerService
from distributed.replay import ReplayStore
from distributed.rollout import RolloutWorker, collect_expert
from envs.seeding import stream_seed

LEARNER_RESOURCE = "frontier_learner"
ROLLOUT_RESOURCE = "frontier_rollout"
# Share of `frontier_learner` each of the learner and the replay store asks for: both fit on the one node that has it.
LEARNER_SLIVER = 0.01
# Seconds between two looks at the in-flight calls when none has finished.
POLL_S = 1.0
# Seconds to wait at the end for in-flight exploration chunks (their episodes are already acknowledged).
DRAIN_S = 60.0
# Seconds between two probes of a lost rollout actor (a probe fails at once while it is restarting).
PROBE_S = 1.0
# Seconds between two looks at Ray's control store for rollout calls that may wait forever.
CHECK_S = 5.0
# How a rollout call fails when its actor is lost: Ray's error, or the driver's cancellation (stranded calls).
ROLLOUT_FAILED = (RayActorError, TaskCancelledError)
# Times in a run (resumes included) the driver rebuilds a lost learner or replay store before it gives the run up.
MAX_CORE_RESTORES = 3
# Seconds a no-op call to the learner or the store may take before the actor is taken to be alive but busy.
READY_TIMEOUT_S = 60.0
# RunState counters of the learner's work: a rebuilt learner takes them from its checkpoint.
LEARNER_COUNTERS = ("updates", "learner_device_s", "learner_flops", "trained_timesteps")


@dataclass
class EpisodeResult:
    """What the driver logs of an episode a rollout actor produced (the episode itself went to the store)."""

    task: str
    ret: float
    success: bool | None = None  # see Episode.success


class RayRolloutWorker(RolloutWorker):
    """RolloutWorker with the calls a remote actor needs: weights by reference, episodes sent
    straight to the replay store actor, and its process id (fault tests)."""

    _weights_ref: str | None = None  # the object id of the weights in use

    def _sync_weights(self, version: int, box: list) -> None:
        # By object id, not version: after a learner restore the versions start again from a checkpoint's.
        if box[0].hex() != self._weights_ref:
            self.set_weights(version, ray.get(box[0]))
            self._weights_ref = box[0].hex()

    def collect_into(self, replay, min_steps: int, version: int, box: list, targets: dict | None = None) -> dict:
        """Explore for at least `min_steps` env steps; store the finished episodes; report them.
        `targets`: return targets to set first (see `set_targets`)."""
        self._sync_weights(version, box)
        self.set_targets(targets or {})
        before = self.counters()
        episodes = self.collect(min_steps)
        acknowledged = ray.get(replay.add.remote(episodes)) if episodes else 0
        return {"episodes": [EpisodeResult(e.task, e.ret, e.success) for e in episodes], "acknowledged": acknowledged,
                "before": before, "after": self.counters(), "weights_version": self.weights_version}

    def evaluate_with(self, episodes_per_task: int, version: int, box: list, targets: dict | None = None) -> dict:
        """Evaluate with the given weights (and return targets); report the episodes' returns."""
        self._sync_weights(version, box)
        self.set_targets(targets or {})
        before = self.counters()
        episodes = self.evaluate(episodes_per_task)
        return {"episodes": [EpisodeResult(e.task, e.ret, e.success) for e in episodes], "before": before,
                "after": self.counters(), "weights_version": self.weights_version}

    def collect_expert_into(self, replay, task: str, kind: str, episodes: int, seed: int) -> tuple[int, dict]:
        return collect_expert_into(replay, task, kind, episodes, seed)

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


def collect_expert_into(replay, task: str, kind: str, episodes: int, seed: int) -> tuple[int, dict]:
    """Expert episodes of `task` into the replay store actor (offline); returns (episodes stored,
    collect_expert's counters). On a rollout actor, or in the driver when none is up."""
    eps, counts = collect_expert(task, kind, episodes, seed)
    return ray.get(replay.add.remote(eps, offline=True)), counts


def sample_from(replay, batch_size: int):
    """A batch from the replay store actor (the learner's `sample`)."""
    return ray.get(replay.sample.remote(batch_size))


def gcs_actor(actor) -> dict:
    """Ray's control store (GCS) record of `actor` ("State", "NumRestarts", ...)."""
    # ray.util.state would serve it through the dashboard, which the embedded instance does not
    # start; the GCS table is always there.
    return ray._private.state.actors(actor_id=actor._actor_id.hex())


class RolloutHealth:
    """Which rollout actors are up: the one place the driver asks before it gives one work.

        health = RolloutHealth({actor: "explore-0", ...})
        health.lost(actor, "ActorUnavailableError")  # True (and one line) if it was up
        health.up(actor)
        health.restored()          # actors whose probe answered since the last look: up again
        health.stranded(actors)    # {actor: Ray's state} of those whose calls may wait forever

    A lost actor is probed with `pid` every PROBE_S; `restored` never blocks. Ray may never find
    it capacity again: a call to an actor Ray is restarting fails at once (`max_task_retries=0`),
    but one queued before the driver first reached the actor waits for the restart.
    """

    def __init__(self, names: dict):
        self.names = names  # actor handle -> name in the driver's lines
        self._probes: dict = {}  # lost actor -> (its probe in flight or None, when to send the next)
        self._next_check = 0.0  # when `stranded` looks at Ray's control store next

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
        """{actor: state} of those of `actors` (ones with calls in flight) that Ray's control store
        shows restarting or dead; looks at most every CHECK_S (else {})."""
        if time.monotonic() < self._next_check:
            return {}
        self._next_check = time.monotonic() + CHECK_S
        states = {a: gcs_actor(a)["State"] for a in set(actors) if self.up(a)}
        return {a: state for a, state in states.items() if state in ("RESTARTING", "DEAD")}

    def restored(self) -> list:
        """Lost actors whose probe has answered since the last call (up again); sends the probes due."""
        in_flight = [probe for probe, _ in self._probes.values() if probe is not None]
        ready = set(ray.wait(in_flight, num_returns=len(in_flight), timeout=0)[0]) if in_flight else set()
        now, back = time.monotonic(), []
        for actor, (probe, due) in list(self._probes.items()):
            if probe is None:
                if now >= due:
                    self._probes[actor] = (actor.pid.remote(), due)
                continue
            if probe not in ready:
                continue
            try:
                ray.get(probe)
            except RayActorError:
                self._probes[actor] = (None, now + PROBE_S)
                continue
            del self._probes[actor]
            print(f"rollout actor {self.names[actor]} is back", flush=True)
            back.append(actor)
        return back


# Seconds to wait for a TCP connection to a given Ray address before calling it unreachable
# (ray.init itself retries a dead address for minutes).
CONNECT_TIMEOUT_S = 5.0


def check_reachable(address: str) -> None:
    """ValueError in one line if `address` ("host:port" or "ray://host:port"; "auto" is Ray's to
    resolve) takes no TCP connection within CONNECT_TIMEOUT_S."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r} is not host:port, ray://host:port, 'auto' or 'local'")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ValueError(f"cannot reach the Ray cluster at {address} within {CONNECT_TIMEOUT_S:g} s: "
                         f"{e.strerror or e}") from None


def _next_multiple(n: int, k: int) -> int:
    return (n // k + 1) * k


class RayRunner(Runner):
    """Replay store, learner and rollout actors on a Ray cluster (or an embedded local instance)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool = False, address: str | None = None,
                 live: bool | None = None, strict: bool = False):
        super().__init__(cfg, run_dir, resume, live, strict)
        self._owns_ray = False
        self.explorers: list = []
        self.evaluators: list = []
        self.acknowledged_episodes = 0  # episodes the replay store acknowledged to this driver
        self.explore_versions: list[tuple[int, int]] = []  # (explorer, weights version) per exploration chunk
        self._eval_pending: dict = {}  # in-flight evaluation call -> (eval actor, episodes per task)
        self._train = None  # the learner's in-flight train call, if any
        self._eval_results: list[EpisodeResult] = []  # episodes of the evaluation in flight, so far
        self._eval_targets: dict[str, float] | None = None  # return targets of the evaluation in flight
        self._eval_weights = None  # (version, reference) the evaluation in flight runs with
        self._local_evaluators: dict[int, RayRolloutWorker] = {}  # eval group -> its in-process stand-in
        self._explore_pending: dict = {}  # in-flight exploration call -> explorer
        self._call_started: dict = {}  # in-flight rollout call -> when it was sent (rollout.call_timeout_s)
        self._idle_explorers: list[int] = []  # explorers waiting for the exploration rate limit
        self.health = RolloutHealth({})  # which rollout actors are up (filled as they start)
        self._needs_stats = not resume or self.resume_from is None  # the learner lacks observation statistics
        self._restarts_before = self.state.actor_restarts  # restarts of earlier sessions of a resumed run
        try:
            self._connect(address)
            self._place()
            if resume:
                restored = self._restore_store()
                if self.resume_from is not None:
                    self.state.updates = ray.get(self.learner.load.remote(str(self.resume_from)))
                print(f"resumed {self.run_dir}: {self.state.updates} updates, {restored} episodes restored",
                      flush=True)
        except BaseException:
            self.monitor.close()
            self._shutdown()
            raise

    # -- Ray and placement ---------------------------------------------------------------

    def _connect(self, address: str | None) -> None:
        if ray.is_initialized():  # a caller (a test, a notebook) already set Ray up
            return
        if address and address != "local":
            check_reachable(address)
            ray.init(address=address)
        else:
            r = self.cfg.rollout
            # address="local": an embedded instance of our own, even when another Ray instance runs
            # on this machine (ray.init() without an address would attach to that one). Logical
            # CPUs: at least one per actor, or the last actors would never be placed on a small machine.
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, 1 + r.explore_workers + r.eval_workers),
                     include_dashboard=False, resources={LEARNER_RESOURCE: 1, ROLLOUT_RESOURCE: 1000})
        self._owns_ray = True

    def _shutdown(self) -> None:
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    def _place(self) -> None:
        cfg = self.cfg
        resources = ray.cluster_resources()
        custom = LEARNER_RESOURCE in resources and ROLLOUT_RESOURCE in resources
        if not custom:
            print(f"warning: the Ray cluster has no '{LEARNER_RESOURCE}'/'{ROLLOUT_RESOURCE}' resources "
                  f"(see cluster.yaml); placing actors by CPU/GPU only", flush=True)
        learner_res = {LEARNER_RESOURCE: LEARNER_SLIVER} if custom else {}
        self._rollout_res = {ROLLOUT_RESOURCE: 1} if custom else {}
        self.replay = ray.remote(num_cpus=0, max_concurrency=8, resources=learner_res)(ReplayStore).remote(
            self.infos, cfg.replay.capacity, cfg.replay.offline_share, cfg.model.context_len,
            cfg.replay.task_weights, str(self.run_dir / "replay"), seed=cfg.seed, eviction=cfg.replay.eviction)
        gpu = resources.get("GPU", 0) >= 1
        self.learner = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, resources=learner_res)(LearnerService).remote(
            cfg.model, self.infos, cfg.learner, cfg.seed, partial(sample_from, self.replay), ray.put,
            cfg.train.batch_size, cfg.rollout.weights_every)

    def _restore_store(self) -> int:
        """Refill the store from replay/ (after a crash or stop); returns the episodes restored."""
        restored, quarantined = ray.get(self.replay.restore.remote(self.strict))
        self.state.shards_quarantined += quarantined
        # Expert data acknowledged before a crash is in replay/: never collect it twice.
        self.state.experts_done |= any(v["offline_timesteps"] for v in self._replay_stats().values())
        return restored

    def _core_lost(self) -> str | None:
        """"learner" or "replay store" if Ray shows that actor dead (a no-op call to it fails), else None."""
        for name, actor in (("learner", self.learner), ("replay store", self.replay)):
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=READY_TIMEOUT_S)
            except RayActorError:
                return name
            except GetTimeoutError:  # alive, busy with a long call
                pass
        return None

    def _restore_core(self, lost: str, error: Exception) -> None:
        """Rebuild the learner and the store after `lost` died (see the module docstring)."""
        s = self.state
        ckpt = latest_checkpoint(self.run_dir)
        print(f"{lost} actor lost ({type(error).__name__}): rebuilding the learner from "
              f"{ckpt.name if ckpt else 'scratch'} and the replay store from replay/", flush=True)
        self._drain_rollouts()
        for actor in (self.learner, self.replay):
            ray.kill(actor)
        self._train = None
        self._place()
        self._restore_store()
        updates_before = s.updates
        saved = json.loads((ckpt / "run_state.json").read_text()) if ckpt else {}
        for key in LEARNER_COUNTERS:
            setattr(s, key, type(getattr(s, key))(saved.get(key, 0)))
        if ckpt is not None:
            ray.get(self.learner.load.remote(str(ckpt)))
        self._needs_stats = ckpt is None  # a checkpoint carries the statistics inside the model
        s.core_restores += 1
        s.updates_redone += updates_before - s.updates

    def _drain_rollouts(self) -> None:
        """Book the evaluation calls in flight, and the exploration calls that land within DRAIN_S
        (the rest are cancelled: what they stored is in replay/, their steps go uncounted)."""
        deadline = time.monotonic() + DRAIN_S
        while self._eval_pending or (self._explore_pending and time.monotonic() < deadline):
            self._settle(deadline)
        for ref in self._explore_pending:
            ray.cancel(ref)
            self._call_started.pop(ref, None)
        self._explore_pending.clear()
        self._idle_explorers = []

    def _rollout_actor(self, args: tuple):
        # max_task_retries=0: a failed call comes back to the driver, which gives the work to
        # another actor or does it itself (Ray would retry it with the weights it first carried,
        # and hold it while the actor cannot be placed).
        cls = ray.remote(num_cpus=1, resources=self._rollout_res, max_restarts=-1, max_task_retries=0,
                         scheduling_strategy="SPREAD")(RayRolloutWorker)
        return cls.remote(*args)

    def _eval_args(self, i: int) -> tuple:
        """RayRolloutWorker's arguments for eval group i: every evaluation episode of its tasks
        side by side (one batched forward per step), as the serial runner does."""
        cfg = self.cfg
        group = cfg.tasks[i::cfg.rollout.eval_workers]
        episodes = max(cfg.train.eval_episodes, cfg.train.final_eval_episodes)
        return group, cfg.tasks, cfg.model, "eval", episodes * len(group), cfg.seed, cfg.rollout.explore_workers + i

    def _start_rollouts(self) -> None:
        cfg, r = self.cfg, self.cfg.rollout
        n = len(cfg.tasks)
        per_worker = max(1, math.ceil(r.envs_per_worker / n)) * n
        self.explorers = [self._rollout_actor((cfg.tasks, cfg.tasks, cfg.model, "explore", per_worker, cfg.seed, i))
                          for i in range(r.explore_workers)]
        # Eval actors split the tasks between them.
        self.evaluators = [self._rollout_actor(self._eval_args(i)) for i in range(min(r.eval_workers, n))]
        self.health = RolloutHealth({**{a: f"explore-{i}" for i, a in enumerate(self.explorers)},
                                     **{a: f"eval-{i}" for i, a in enumerate(self.evaluators)}})

    # -- Runner hooks --------------------------------------------------------------------

    def save_learner(self, directory: Path) -> None:
        ray.get(self.learner.save.remote(str(directory)))

    def checkpoint(self) -> Path:
        # After Ctrl-C or SIGTERM a train call may still be running: book it first (the learner
        # finishes it), so the checkpoint's compute counters agree with the updates it holds.
        if self._train is not None:
            self._trained(ray.get(self._train), "stop", schedule=False)
        return super().checkpoint()

    def write_summary(self, status: str, **extra) -> dict:
        self._count_restarts()
        return super().write_summary(status, **extra)

    def _count_restarts(self) -> None:
        """Rollout actor restarts, from Ray's control store (GCS)."""
        try:
            current = sum(gcs_actor(a)["NumRestarts"] for a in self.explorers + self.evaluators)
        except Exception:  # Ray already shut down: keep the last count
            return
        self.state.actor_restarts = self._restarts_before + current

    def _lost(self, actor, why: str) -> None:
        """`actor` is down until its probe answers (see RolloutHealth)."""
        if self.health.lost(actor, why):
            self.state.rollout_actors_lost += 1

    def _rollout_calls(self) -> dict:
        """{call: actor} of the exploration and evaluation calls in flight."""
        return {**{ref: self.explorers[i] for ref, i in self._explore_pending.items()},
                **{ref: self.evaluators[i] for ref, (i, _) in self._eval_pending.items()}}

    def _sent(self, ref):
        """Note when the rollout call `ref` was sent (for rollout.call_timeout_s); returns it."""
        self._call_started[ref] = time.monotonic()
        return ref

    def _watch_calls(self, calls: dict) -> None:
        """Of the rollout calls in flight ({call: actor}): kill the actor of one past
        `rollout.call_timeout_s` (hung), and cancel those of actors Ray shows restarting or dead
        (see RolloutHealth). Either way the calls come back failed and their work moves."""
        timeout, now = self.cfg.rollout.call_timeout_s, time.monotonic()
        overdue = {a for ref, a in calls.items() if timeout and now - self._call_started.get(ref, now) > timeout}
        for actor in overdue:
            print(f"rollout actor {self.health.names[actor]}: a call ran past rollout.call_timeout_s "
                  f"({timeout:g} s); killing it (Ray restarts it)", flush=True)
            self.state.rollout_calls_timed_out += 1
            for ref in [r for r, a in calls.items() if a == actor]:
                self._call_started.pop(ref, None)
            ray.kill(actor, no_restart=False)
        for actor, state in self.health.stranded(calls.values()).items():
            self._lost(actor, f"Ray shows it {state.lower()}")
            for ref in [r for r, a in calls.items() if a == actor]:
                ray.cancel(ref)

    def _tick(self, phase: str) -> None:
        s = self.state
        self.monitor.status(phase, s.updates, self.planned_updates, s.env_steps, self.wall_s)
        if time.monotonic() - self._last_summary > self.cfg.summary_every_s:
            self.monitor.replay(self._replay_stats(), s.env_steps)
            self.write_summary("running")

    # -- the pieces ----------------------------------------------------------------------

    def collect_experts(self) -> None:
        """One call per task, spread over the rollout actors that are up (explore and eval), straight
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
            args = (self.replay, spec.name, kind, cfg.experts.episodes, stream_seed("expert", cfg.seed, spec.name))
            up = [a for a in self.explorers + self.evaluators if self.health.up(a)]
            if not up:
                book(kind, *collect_expert_into(*args))
                return
            actor = up[i % len(up)]
            pending[self._sent(actor.collect_expert_into.remote(*args))] = (i, kind, actor)

        for i in range(len(self.specs)):
            submit(i)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                i, kind, actor = pending.pop(ref)
                self._call_started.pop(ref, None)
                try:
                    book(kind, *ray.get(ref))
                except ROLLOUT_FAILED as e:
                    if isinstance(e, RayTaskError):  # the actor is up; its call to the store failed
                        raise
                    self._lost(actor, type(e).__name__)
                    submit(i)
            self._watch_calls({ref: actor for ref, (_, _, actor) in pending.items()})
            self.monitor.status("experts", 0, self.planned_updates, self.state.env_steps, self.wall_s)
        self.state.experts_done = True

    def set_observation_stats(self) -> None:
        stats = {i: observation_stats(ray.get(self.replay.episodes.remote(self.infos[i].name)))
                 for i in self.vector_tasks()}
        ray.get(self.learner.set_observation_stats.remote(stats))

    def _replay_stats(self) -> dict:
        return ray.get(self.replay.stats.remote())

    def _chunk(self) -> int:
        """Updates in the next train call: up to the next weights, evaluation, checkpoint or phase boundary."""
        cfg, u = self.cfg, self.state.updates
        stops = [self.planned_updates, _next_multiple(u, cfg.rollout.weights_every),
                 _next_multiple(u, cfg.train.eval_every), _next_multiple(u, cfg.checkpoint_every)]
        if u < cfg.train.pretrain_updates:
            stops.append(cfg.train.pretrain_updates)
        return min(stops) - u

    def _trained(self, result: dict, phase: str, schedule: bool = True) -> None:
        """Book the finished train call; evaluate and checkpoint on their schedules (unless not `schedule`)."""
        self._train = None
        s = self.state
        s.updates = result["updates"]
        self._weights = result["weights"]
        m = result["metrics"]
        self.account_update(m, result["trained_timesteps"])
        scalars = {k: v for k, v in m.items() if k not in ("learner/update_s", "learner/flops")}
        scalars["learner/utilization"] = result["utilization"]
        scalars["learner/batch_wait_s"] = result["batch_wait_s"]
        self.monitor.scalars(scalars, s.env_steps)
        if not schedule:
            return
        if s.updates % self.cfg.train.eval_every == 0 and s.updates < self.planned_updates:
            self._start_eval(self.cfg.train.eval_episodes)
        if s.updates % self.cfg.checkpoint_every == 0:
            self.checkpoint()
        self._tick(phase)

    # -- evaluation ----------------------------------------------------------------------

    def _start_eval(self, episodes: int) -> None:
        """Launch an evaluation on every eval actor unless one is still running; the driver
        evaluates the groups of the actors that are down."""
        if self._eval_pending:
            return
        version, box = self._eval_weights = self._weights
        targets = self._eval_targets = self.targets(self._replay_stats, "eval")
        down = []
        for i, actor in enumerate(self.evaluators):
            if self.health.up(actor):
                self._eval_pending[self._sent(actor.evaluate_with.remote(episodes, version, box, targets))] = (i, episodes)
            else:
                down.append(i)
        for i in down:  # after the remote calls, so they run meanwhile
            self._book_eval(self._evaluate_in_driver(i, episodes))

    def _evaluate_in_driver(self, i: int, episodes: int) -> dict:
        """Eval group i's share of the evaluation in flight, run here (blocking): its actor is down."""
        if i not in self._local_evaluators:
            self._local_evaluators[i] = RayRolloutWorker(*self._eval_args(i))
        return self._local_evaluators[i].evaluate_with(episodes, *self._eval_weights, self._eval_targets)

    def _eval_done(self, ref) -> None:
        i, episodes = self._eval_pending.pop(ref)
        self._call_started.pop(ref, None)
        try:
            out = ray.get(ref)
        except ROLLOUT_FAILED as e:
            self._lost(self.evaluators[i], type(e).__name__)
            out = self._evaluate_in_driver(i, episodes)
        self._book_eval(out)

    def _book_eval(self, out: dict) -> None:
        self.account(out["before"], out["after"], "eval")
        self._eval_results.extend(out["episodes"])
        if not self._eval_pending:  # every group reported: one evaluation point for all tasks
            self.record_episodes(self._eval_results, "eval", self._eval_targets)
            self._eval_results = []

    def evaluate(self, episodes: int) -> None:
        """Blocking evaluation (the final one): waits for any running one, then runs a fresh one.

        Meanwhile the exploration chunks still in flight land (for at most DRAIN_S): their
        episodes are in the store already, and their steps count.
        """
        deadline = time.monotonic() + DRAIN_S
        while self._eval_pending:
            self._settle(deadline)
        self._start_eval(episodes)
        while self._eval_pending or (self._explore_pending and time.monotonic() < deadline):
            self._settle(deadline)

    def _settle(self, deadline: float) -> None:
        """Book whichever evaluation call, or exploration call before `deadline`, finishes next."""
        refs = [*self._eval_pending, *(self._explore_pending if time.monotonic() < deadline else ())]
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=1, timeout=POLL_S)
        for ref in ready:
            if ref in self._explore_pending:
                self._explore_done(ref, resubmit=False)
            else:
                self._eval_done(ref)
        self._watch_calls(self._rollout_calls())

    # -- exploration ---------------------------------------------------------------------

    def _start_explore(self, i: int) -> None:
        version, box = self._weights
        ref = self._sent(self.explorers[i].collect_into.remote(self.replay, self.cfg.train.explore_steps_per_round,
                                                               version, box, self.targets(self._replay_stats, "explore")))
        self._explore_pending[ref] = i

    def _may_explore(self) -> bool:
        """The exploration rate limit: one more chunk only while the steps collected (and in
        flight) stay within `explore_steps_per_round` per `updates_per_round` online updates,
        the ratio the serial runner keeps. Actors running flat out would flood the store with
        exploration data and change what the learner trains on with the machine's speed."""
        t = self.cfg.train
        rounds = max(0, self.state.updates - t.pretrain_updates) // t.updates_per_round + 1
        collected = self.state.env_steps_by_source.get("explore", 0) + len(self._explore_pending) * t.explore_steps_per_round
        return collected < rounds * t.explore_steps_per_round

    def _use_restored(self) -> None:
        """Explorers Ray restored wait for the rate limit again; eval actors take the next evaluation."""
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
            out = ray.get(ref)
        except ROLLOUT_FAILED as e:
            if isinstance(e, RayTaskError):  # the actor is up; its call to the store failed (the store is lost)
                return
            # The actor died (process killed, node lost): what it had not yet handed to the
            # replay store is lost; it explores again once Ray restores it (_use_restored).
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
            self._shutdown()

    def _stop_actors(self) -> None:
        if ray.is_initialized() and hasattr(self, "learner"):
            try:
                ray.get(self.learner.stop.remote(), timeout=10)
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

    def _schedule(self) -> None:
        cfg, s = self.cfg, self.state
        if not self.explorers:
            self._start_rollouts()
        if not s.experts_done:
            self.collect_experts()
        if self._needs_stats:
            self.set_observation_stats()
            self._needs_stats = False
        self._weights = ray.get(self.learner.weights.remote())

        # Offline pretraining: the learner alone (evaluations run beside it on their schedule).
        while s.updates < cfg.train.pretrain_updates:
            self._train = self.learner.train.remote(self._chunk())
            while True:
                ready, _ = ray.wait([self._train, *self._eval_pending], num_returns=1, timeout=POLL_S)
                if self._train in ready:
                    break
                for ref in ready:
                    self._eval_done(ref)
                self._watch_calls(self._rollout_calls())
            self._trained(ray.get(self._train), "pretrain")

        # Online: exploration actors and the learner run at the same time, from the moment
        # every explorer is up (else early updates would train on expert data alone).
        probes = {self.explorers[i].pid.remote(): self.explorers[i]
                  for i, a in enumerate(self.explorers) if self.health.up(a)}
        while probes:
            ready, _ = ray.wait(list(probes), num_returns=len(probes), timeout=POLL_S)
            for ref in ready:
                try:
                    ray.get(ref)
                except ROLLOUT_FAILED as e:
                    self._lost(probes[ref], type(e).__name__)
                del probes[ref]
            self._watch_calls(probes)
        if s.updates < self.planned_updates:
            self._idle_explorers = [i for i, a in enumerate(self.explorers) if self.health.up(a)]
            self._explore_if_allowed()
            self._train = self.learner.train.remote(self._chunk())
        while self._train is not None:
            ready, _ = ray.wait([self._train, *self._explore_pending, *self._eval_pending], num_returns=1,
                                timeout=POLL_S)
            self._use_restored()
            self._watch_calls(self._rollout_calls())
            for ref in ready:
                if ref == self._train:
                    self._trained(ray.get(self._train), "online")
                    self._explore_if_allowed()
                    out_of_time = cfg.train.max_wall_s and self.wall_s > cfg.train.max_wall_s
                    done = s.updates >= self.planned_updates or out_of_time
                    if not done:
                        self._train = self.learner.train.remote(self._chunk())
                elif ref in self._explore_pending:
                    self._explore_done(ref, resubmit=True)
                else:
                    self._eval_done(ref)
            self._tick("online")

        self.monitor.status("final eval", s.updates, self.planned_updates, s.env_steps, self.wall_s)
        self._weights = ray.get(self.learner.publish.remote())
        self.evaluate(cfg.train.final_eval_episodes)
        self.monitor.replay(self._replay_stats(), s.env_steps)
        ray.get(self.learner.export_weights.remote(str(self.run_dir / "model.safetensors")))
