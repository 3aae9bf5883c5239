"""The Ray executor: the trainer's components as Ray actors, working at the same time.

    summary = Trainer(cfg, run_dir, RayExecutor(address=None)).run()   # None: embedded local Ray

Placement (custom resources, so one file serves a laptop and a cluster; see cluster.yaml):
- replay store: a threaded actor (many writers and the learner's prefetch at once), no CPU,
  a sliver of `frontier_learner`, so it sits on the learner's node next to `replay/`;
- learner: `LearnerService`, one GPU when the cluster has one, a sliver of `frontier_learner`;
- rollout actors (explore and eval modes): one CPU and one `frontier_rollout` each, spread
  over the nodes, restarted by Ray when they die (`max_restarts=-1`, `max_task_retries=0`: a
  failed call comes back to the trainer, which gives its work to another actor or the driver);
- expert collection: one call per task name, spread over the rollout actors, writing into the
  replay store.

The schedule and the fault handling are the trainer's (distributed/trainer.py).
"""
from __future__ import annotations

import os
import socket
from functools import partial

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, TaskCancelledError

from frontier.distributed.config import RunConfig
from frontier.distributed.executor import (Handle, LearnerHandle, LearnerSpec, ReplayHandle, RolloutHandle,
                                           RolloutSpec)
from frontier.distributed.learner_service import LearnerService
from frontier.distributed.replay import ReplayStore
from frontier.distributed.rollout import RolloutService

LEARNER_RESOURCE = "frontier_learner"
ROLLOUT_RESOURCE = "frontier_rollout"
# Share of `frontier_learner` each of the learner and the replay store asks for: both fit on the one node that has it.
LEARNER_SLIVER = 0.01
# Seconds a no-op call to the learner or the store may take before the actor is taken to be alive but busy.
READY_TIMEOUT_S = 60.0
# Seconds to wait for a TCP connection to a given Ray address before calling it unreachable
# (ray.init itself retries a dead address for minutes).
CONNECT_TIMEOUT_S = 5.0


class RayRolloutWorker(RolloutService):
    """A rollout service as a Ray actor: weights by object reference (each actor fetches them from
    its node's object store), episodes to the replay store actor."""

    _weights_ref: str | None = None  # the object id of the weights in use

    def _sync_weights(self, version: int, box: list) -> None:
        # By object id, not version: after a learner restore the versions start again from a checkpoint's.
        if box[0].hex() != self._weights_ref:
            self.set_weights(version, ray.get(box[0]))
            self._weights_ref = box[0].hex()

    def _store(self, replay, episodes: list, offline: bool = False) -> int:
        return ray.get(replay.add.remote(episodes, offline=offline))

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()


def sample_from(replay, batch_size: int):
    """A batch from the replay store actor (the learner's `sample`)."""
    return ray.get(replay.sample.remote(batch_size))


def gcs_actor(actor) -> dict:
    """Ray's control store (GCS) record of `actor` ("State", "NumRestarts", ...)."""
    # ray.util.state would serve it through the dashboard, which the embedded instance does not
    # start; the GCS table is always there.
    return ray._private.state.actors(actor_id=actor._actor_id.hex())


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


class RayExecutor:
    """Executor of a run on a Ray cluster, or on an embedded local instance (distributed/executor.py:
    Executor)."""

    remote = True
    # How a call fails when its actor is lost: Ray's error, or the trainer's cancellation (stranded calls).
    LOST = (RayActorError, TaskCancelledError)
    # An error raised inside a call (the actor is up); one whose cause is a lost actor is also LOST.
    TASK_ERROR = RayTaskError

    def __init__(self, address: str | None = None):
        self.address = address
        self._owns_ray = False
        self._custom: bool | None = None  # whether the cluster has the frontier resources

    def connect(self, cfg: RunConfig) -> None:
        if ray.is_initialized():  # a caller (a test, a notebook) already set Ray up
            return
        address = self.address
        if address and address != "local":
            check_reachable(address)
            ray.init(address=address)
        else:
            r = cfg.rollout
            # address="local": an embedded instance of our own, even when another Ray instance runs
            # on this machine (ray.init() without an address would attach to that one). Logical
            # CPUs: at least one per actor, or the last actors would never be placed on a small machine.
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, 1 + r.explore_workers + r.eval_workers),
                     include_dashboard=False, resources={LEARNER_RESOURCE: 1, ROLLOUT_RESOURCE: 1000})
        self._owns_ray = True

    def connected(self) -> bool:
        return ray.is_initialized()

    def shutdown(self) -> None:
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    # -- placement -----------------------------------------------------------------------

    def _resources(self, kind: str) -> dict:
        if self._custom is None:
            resources = ray.cluster_resources()
            self._custom = LEARNER_RESOURCE in resources and ROLLOUT_RESOURCE in resources
            if not self._custom:
                print(f"warning: the Ray cluster has no '{LEARNER_RESOURCE}'/'{ROLLOUT_RESOURCE}' resources "
                      f"(see cluster.yaml); placing actors by CPU/GPU only", flush=True)
        if not self._custom:
            return {}
        return {LEARNER_RESOURCE: LEARNER_SLIVER} if kind == "learner" else {ROLLOUT_RESOURCE: 1}

    def replay_store(self, *args, **kwargs) -> ReplayHandle:
        cls = ray.remote(num_cpus=0, max_concurrency=8, resources=self._resources("learner"))(ReplayStore)
        return ReplayHandle(self, cls.remote(*args, **kwargs))

    def learner_service(self, replay: ReplayHandle, spec: LearnerSpec) -> LearnerHandle:
        gpu = ray.cluster_resources().get("GPU", 0) >= 1
        cls = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, resources=self._resources("learner"))(LearnerService)
        return LearnerHandle(self, spec.build(cls.remote, partial(sample_from, replay.target), ray.put))

    def rollout_service(self, spec: RolloutSpec) -> RolloutHandle:
        cls = ray.remote(num_cpus=1, resources=self._resources("rollout"), max_restarts=-1, max_task_retries=0,
                         scheduling_strategy="SPREAD")(RayRolloutWorker)
        return RolloutHandle(self, spec.build(cls.remote))

    def local_service(self, spec: RolloutSpec) -> RayRolloutWorker:
        """An in-driver stand-in for a rollout actor that is down."""
        return spec.build(RayRolloutWorker)

    # -- calls ---------------------------------------------------------------------------

    def _call(self, actor, fn, *args):
        """`fn` (a component's method) of `actor`, sent: actor.<fn>.remote(*args)."""
        return getattr(actor, fn.__name__).remote(*args)

    def wait(self, refs: list, num_returns: int = 1, timeout: float | None = None) -> tuple[list, list]:
        return ray.wait(refs, num_returns=num_returns, timeout=timeout)

    def get(self, ref, timeout: float | None = None):
        return ray.get(ref, timeout=timeout)

    def cancel(self, ref) -> None:
        ray.cancel(ref)

    def kill(self, handle: Handle, restart: bool) -> None:
        ray.kill(handle.target, no_restart=not restart)

    def dead(self, handle: Handle) -> bool:
        """Whether a no-op call to the actor fails (Ray shows it dead); a busy actor is alive."""
        try:
            ray.get(handle.target.__ray_ready__.remote(), timeout=READY_TIMEOUT_S)
        except RayActorError:
            return True
        except GetTimeoutError:  # alive, busy with a long call
            pass
        return False

    def actor_state(self, handle: Handle) -> str:
        return gcs_actor(handle.target)["State"]

    def restarts(self, handle: Handle) -> int:
        return gcs_actor(handle.target)["NumRestarts"]
