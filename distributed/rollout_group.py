"""RolloutGroup: a run's rollout actors (explorers and eval workers) and the one place that knows
whether each is up. It owns their calls in flight, when each was sent, the probes of lost actors,
the in-driver stand-ins that take a lost actor's evaluations, and expert collection; the trainer
(distributed/trainer.py) tells it what to run and books what comes back through `record`.

    group = RolloutGroup(executor, cfg, specs, state, record, explore_targets)
    group.start()                            # place the actors
    group.collect_experts(status)            # expert episodes straight into group.replay
    group.start_eval(eid, episodes, targets, at)
    group.book(ready)                        # calls the executor's wait returned: booked, work moved

Faults (elastic, as RLlib's env runners; they happen on Ray, where actors die), handled here: a
rollout actor whose call fails with the executor's `LOST` errors (its process died, its node was
lost) is down. The group says so in one line, counts it (`faults.rollout_actors_lost`) and works
around it: training goes on with the explorers left, or with none (the learner trains on the
store); the evaluation of its tasks, and expert collection, move to the driver (an in-process
worker) or to the actors left. Ray restarts the actor (`max_restarts=-1`) where it finds capacity,
which may be never; until then every call to it fails at once, so the group probes it every PROBE_S
without blocking and uses it again once a probe answers (the next call re-sends the weights). A
call Ray queued before the driver first reached the actor is not failed but kept for the restart,
so every CHECK_S the group cancels the calls of actors the executor shows restarting. A call that
runs past `rollout.call_timeout_s` (a step hung in C code, where the per-step deadline cannot
reach) gets its actor killed; Ray restarts it and the same path takes over
(`faults.rollout_calls_timed_out`). `actor_restarts` counts restarts as Ray records them.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from frontier.distributed.config import RunConfig
from frontier.distributed.executor import Executor, RolloutHandle, RolloutSpec
from frontier.distributed.run_files import RunState
from frontier.distributed.schedule import explore_allowed
from frontier.envs.seeding import stream_seed

# Seconds between two looks at the in-flight calls when none has finished.
POLL_S = 1.0
# Seconds between two probes of a lost rollout actor (a probe fails at once while it is restarting).
PROBE_S = 1.0
# Seconds between two looks at the executor's actor states for rollout calls that may wait forever.
CHECK_S = 5.0
# What `_result` hands back for a call whose actor was lost.
LOST_CALL = object()


class RolloutGroup:
    """The rollout actors of a run, their health and their calls (see the module docstring)."""

    def __init__(self, executor: Executor, cfg: RunConfig, specs, state: RunState,
                 record: Callable[..., None], explore_targets: Callable[[], dict | None]):
        self.ex, self.cfg, self.specs, self.state = executor, cfg, specs, state
        self.record = record  # record(episodes, kind, targets=None, at=None): the trainer books episodes
        self.explore_targets = explore_targets  # the return targets exploration is conditioned on now
        self.replay = None  # the replay store's handle (set by the trainer, which places it)
        self.weights: tuple | None = None  # (version, [handle]): the published weights rollouts act with
        self.explorers: list[RolloutHandle] = []
        self.evaluators: list[RolloutHandle] = []
        self.names: dict[RolloutHandle, str] = {}  # actor -> its name in the run's lines
        self._probes: dict = {}  # lost actor -> (its probe in flight or None, when to send the next)
        self._next_check = 0.0  # when `_stranded` looks at the actor states next
        self.explore_pending: dict = {}  # in-flight exploration call -> explorer
        self.eval_pending: dict = {}  # in-flight evaluation call -> (evaluation id, eval group, episodes per task)
        self._call_started: dict = {}  # in-flight rollout call -> when it was sent (rollout.call_timeout_s)
        self.idle_explorers: list[int] = []  # explorers waiting for the exploration rate limit
        self._local_workers: dict[int, object] = {}  # eval group -> its in-driver stand-in
        # Evaluations started and not yet recorded, by id: {"left": groups to report, "episodes":
        # EpisodeResults so far, "targets", "at": the counters when started, "weights"}.
        self._evals: dict[int, dict] = {}
        self.acknowledged_episodes = 0  # episodes the replay store acknowledged
        self.explore_versions: list[tuple[int, int]] = []  # (explorer, weights version) per exploration chunk

    # -- placement -----------------------------------------------------------------------

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

    def start(self) -> None:
        """Place the explorers and the eval workers (which split the tasks between them)."""
        r = self.cfg.rollout
        self.explorers = [self.ex.rollout_service(self._explore_spec(i)) for i in range(r.explore_workers)]
        self.evaluators = [self.ex.rollout_service(self._eval_spec(i))
                           for i in range(min(r.eval_workers, len(self.cfg.tasks)))]
        self.names = {**{a: f"explore-{i}" for i, a in enumerate(self.explorers)},
                      **{a: f"eval-{i}" for i, a in enumerate(self.evaluators)}}

    def _local_worker(self, i: int):
        """Eval group i's in-driver stand-in (built once), for work whose actor is down."""
        if i not in self._local_workers:
            self._local_workers[i] = self.ex.local_service(self._eval_spec(i))
        return self._local_workers[i]

    def restarts(self) -> int:
        """Restarts of the rollout actors, as the executor records them."""
        return sum(self.ex.restarts(a) for a in self.explorers + self.evaluators)

    # -- health --------------------------------------------------------------------------

    def up(self, actor) -> bool:
        return actor not in self._probes

    def lost(self, actor, why: str) -> None:
        """`actor` is down (one line, counted) until its probe answers."""
        if actor in self._probes:
            return
        self._probes[actor] = (None, time.monotonic() + PROBE_S)
        self.state.rollout_actors_lost += 1
        print(f"rollout actor {self.names[actor]} lost ({why}): the run goes on without it, "
              f"its work on the actors left or the driver, until Ray restores it", flush=True)

    def _result(self, ref, actor, tolerate_task_error: bool = True):
        """The call's result; LOST_CALL after marking `actor` lost if its process or node died. An
        error raised inside the call of an actor that is up (`TASK_ERROR`: a call it made to a lost
        replay store) is raised, unless `tolerate_task_error`: then LOST_CALL, the actor kept up."""
        self._call_started.pop(ref, None)
        try:
            return self.ex.get(ref)
        except self.ex.LOST as e:
            if isinstance(e, self.ex.TASK_ERROR):
                if not tolerate_task_error:
                    raise
                return LOST_CALL
            self.lost(actor, type(e).__name__)
            return LOST_CALL

    def _restored(self) -> list:
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

    def _stranded(self, actors) -> dict:
        """{actor: state} of those of `actors` (ones with calls in flight) that the executor shows
        restarting or dead; looks at most every CHECK_S (else {})."""
        if time.monotonic() < self._next_check:
            return {}
        self._next_check = time.monotonic() + CHECK_S
        states = {a: self.ex.actor_state(a) for a in set(actors) if self.up(a)}
        return {a: state for a, state in states.items() if state in ("RESTARTING", "DEAD")}

    def calls(self) -> dict:
        """{call: actor} of the exploration and evaluation calls in flight."""
        return {**{ref: self.explorers[i] for ref, i in self.explore_pending.items()},
                **{ref: self.evaluators[i] for ref, (_, i, _) in self.eval_pending.items()}}

    def _sent(self, ref):
        """Note when the rollout call `ref` was sent (for rollout.call_timeout_s); returns it."""
        self._call_started[ref] = time.monotonic()
        return ref

    def watch(self, calls: dict | None = None) -> None:
        """Of the rollout calls in flight ({call: actor}, default all of the group's): kill the actor
        of one past `rollout.call_timeout_s` (hung), and cancel those of actors the executor shows
        restarting or dead. Either way the calls come back failed and their work moves. In process
        a call runs only when waited for: nothing to watch."""
        if not self.ex.remote:
            return
        calls = self.calls() if calls is None else calls
        timeout, now = self.cfg.rollout.call_timeout_s, time.monotonic()
        overdue = {a for ref, a in calls.items() if timeout and now - self._call_started.get(ref, now) > timeout}
        for actor in overdue:
            print(f"rollout actor {self.names[actor]}: a call ran past rollout.call_timeout_s "
                  f"({timeout:g} s); killing it (Ray restarts it)", flush=True)
            self.state.rollout_calls_timed_out += 1
            for ref in [r for r, a in calls.items() if a == actor]:
                self._call_started.pop(ref, None)
            self.ex.kill(actor, restart=True)
        for actor, state in self._stranded(calls.values()).items():
            self.lost(actor, f"Ray shows it {state.lower()}")
            for ref in [r for r, a in calls.items() if a == actor]:
                self.ex.cancel(ref)

    def await_explorers(self) -> None:
        """Wait until every explorer that is up answers a probe (marking those that fail lost)."""
        probes = {a.pid(): a for a in self.explorers if self.up(a)}
        while probes:
            ready, _ = self.ex.wait(list(probes), num_returns=len(probes), timeout=POLL_S)
            for ref in ready:
                self._result(ref, probes.pop(ref))
            self.watch(probes)

    # -- counters ------------------------------------------------------------------------

    def account(self, before: dict, after: dict, source: str) -> None:
        """Charge a rollout worker's counters (env steps, CPU, dropped episodes) between two readings."""
        self.state.add_steps(source, after["env_steps"] - before["env_steps"])
        self.state.actor_cpu_s += after["cpu_s"] - before["cpu_s"]
        self.state.add_dropped({c: n - before["dropped_by_cause"].get(c, 0) for c, n in after["dropped_by_cause"].items()})

    # -- expert data ---------------------------------------------------------------------

    def collect_experts(self, status: Callable[[], None]) -> None:
        """One call per task, spread over the rollout workers that are up (explore and eval), straight
        into the store; in the driver while none is up. `status()` after each look at the calls."""
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
            up = [a for a in self.explorers + self.evaluators if self.up(a)]
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
                out = self._result(ref, actor, tolerate_task_error=False)
                if out is LOST_CALL:
                    submit(i)
                else:
                    book(kind, *out)
            self.watch({ref: actor for ref, (_, _, actor) in pending.items()})
            status()

    # -- evaluation ----------------------------------------------------------------------

    def start_eval(self, eid: int, episodes: int, targets: dict | None, at: dict) -> None:
        """Evaluation `eid` of `self.weights` on every eval worker (on Ray an actor still busy with
        an earlier one takes it next); the driver evaluates the groups of the actors that are down.
        Recorded (`record`) once every group reported, at the counters `at`."""
        version, box = self.weights
        self._evals[eid] = {"left": len(self.evaluators), "episodes": [], "weights": self.weights,
                            "targets": targets, "at": at}
        down = []
        for i, actor in enumerate(self.evaluators):
            if self.up(actor):
                call = actor.evaluate_with(episodes, version, box, targets, eid)
                self.eval_pending[self._sent(call)] = (eid, i, episodes)
            else:
                down.append(i)
        for i in down:  # after the remote calls, so they run meanwhile
            self._book_eval(eid, self._evaluate_in_driver(eid, i, episodes))

    def _evaluate_in_driver(self, eid: int, i: int, episodes: int) -> dict:
        """Eval group i's share of evaluation `eid`, run here (blocking): its actor is down."""
        ev = self._evals[eid]
        return self._local_worker(i).evaluate_with(episodes, *ev["weights"], ev["targets"], eid)

    def _eval_done(self, ref) -> None:
        eid, i, episodes = self.eval_pending.pop(ref)
        self._call_started.pop(ref, None)
        try:
            out = self.ex.get(ref)
        except self.ex.LOST as e:
            self.lost(self.evaluators[i], type(e).__name__)
            out = self._evaluate_in_driver(eid, i, episodes)
        self._book_eval(eid, out)

    def _book_eval(self, eid: int, out: dict) -> None:
        self.account(out["before"], out["after"], "eval")
        ev = self._evals[eid]
        ev["episodes"].extend(out["episodes"])
        ev["left"] -= 1
        if ev["left"] == 0:  # every group reported: one evaluation point for all tasks
            self.record(ev["episodes"], "eval", ev["targets"], at=ev["at"])
            del self._evals[eid]

    # -- exploration ---------------------------------------------------------------------

    def _start_explore(self, i: int) -> None:
        version, box = self.weights
        call = self.explorers[i].collect_into(self.replay, self.cfg.train.explore_steps_per_round, version, box,
                                              self.explore_targets())
        self.explore_pending[self._sent(call)] = i

    def start_exploring(self) -> None:
        """Every explorer that is up waits for the rate limit; start those it allows."""
        self.idle_explorers = [i for i, a in enumerate(self.explorers) if self.up(a)]
        self.explore_if_allowed()

    def explore_if_allowed(self) -> None:
        """Start waiting explorers while the exploration rate limit (schedule.explore_allowed) allows."""
        s = self.state
        while self.idle_explorers and explore_allowed(self.cfg, s.updates, s.env_steps_by_source.get("explore", 0),
                                                      len(self.explore_pending)):
            self._start_explore(self.idle_explorers.pop(0))

    def use_restored(self) -> None:
        """Explorers restored wait for the rate limit again; eval actors take the next evaluation."""
        for actor in self._restored():
            if actor in self.explorers:
                self.idle_explorers.append(self.explorers.index(actor))
        self.explore_if_allowed()

    def _explore_done(self, ref, resubmit: bool) -> None:
        i = self.explore_pending.pop(ref)
        # A lost actor's episodes not yet handed to the store are lost; it explores again once it
        # is restored (use_restored). A failed call to a lost store: the trainer rebuilds the store.
        out = self._result(ref, self.explorers[i])
        if out is LOST_CALL:
            return
        self.account(out["before"], out["after"], "explore")
        self.acknowledged_episodes += out["acknowledged"]
        self.explore_versions.append((i, out["weights_version"]))
        self.record(out["episodes"], "explore")
        if resubmit:
            self.idle_explorers.append(i)
            self.explore_if_allowed()

    # -- waiting -------------------------------------------------------------------------

    def book(self, ready, resubmit: bool = True) -> None:
        """Book the group's calls among `ready` (what the executor's wait returned); finished
        explorers explore again (`resubmit`) as the rate limit allows."""
        for ref in ready:
            if ref in self.explore_pending:
                self._explore_done(ref, resubmit)
            elif ref in self.eval_pending:
                self._eval_done(ref)

    def settle(self, deadline: float) -> None:
        """Book whichever evaluation call, or exploration call before `deadline`, finishes next."""
        refs = [*self.eval_pending, *(self.explore_pending if time.monotonic() < deadline else ())]
        if not refs:
            return
        ready, _ = self.ex.wait(refs, num_returns=1, timeout=POLL_S)
        self.book(ready, resubmit=False)
        self.watch()

    def drain(self, deadline: float) -> None:
        """Book the evaluation calls in flight, and the exploration calls that land before
        `deadline`; cancel the rest (what they stored is in replay/, their steps go uncounted)."""
        while self.eval_pending or (self.explore_pending and time.monotonic() < deadline):
            self.settle(deadline)
        for ref in self.explore_pending:
            self.ex.cancel(ref)
            self._call_started.pop(ref, None)
        self.explore_pending.clear()
        self.idle_explorers = []
