"""LearnerService: the learner actor's body. Wraps `agents.learner.Learner` with batch
prefetching and weight publishing, through the two functions it is given (no Ray in here):
`sample(batch_size) -> Batch` and `publish(weights) -> handle`.

A plain class each executor places: in process (distributed/local_executor.py: `sample` is the
store's own, `publish` keeps the weights as they are, no prefetch) or as an actor
(`ray.remote(**opts)(LearnerService)`, distributed/ray_executor.py: `sample` asks the replay
store actor and `publish` is `ray.put`):

    learner = ray.remote(num_gpus=1)(LearnerService).remote(model_cfg, infos, learner_cfg, seed,
                                                           sample, publish, batch_size=128, weights_every=50)
    result = ray.get(learner.train.remote(100))     # 100 updates; metrics, counters, weights
    version, (ref,) = result["weights"]             # one ray.put, read by every rollout actor

A background thread keeps a few batches ready (`prefetch` of them) as device tensors, so an
update never waits on the store unless the store is slower than the learner; on CUDA that
thread pins each batch and starts its host-to-device copy (`batch_to_tensors`), so the copy
overlaps the updates before it. With `prefetch=0` batches are sampled when needed, in the
caller's thread (a serial run is then deterministic: a batch never races the data being added).
"""
from __future__ import annotations

import queue
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from frontier.agents.learner import Learner, LearnerConfig
from frontier.agents.model import ModelConfig, batch_to_tensors
from frontier.agents.spaces import TaskInfo
from frontier.agents.surgery import freeze_trunk, transplant
from frontier.agents.trajectory import Batch
from frontier.distributed import config as config_mod

# In a checkpoint: the policy held-out selection kept (train.select: val), with its updates and NLL.
BEST_FILE = "best_val.safetensors"
# Seconds the learner waits for a prefetched batch before reporting the prefetch thread stuck.
BATCH_TIMEOUT_S = 300.0


def init_weights_from(model, run_dir: Path, task_map: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Load another run's final model.safetensors into `model` where it fits (agents.surgery.transplant:
    per-task parameters by task name, after renaming by `task_map`; the trunk where shapes match)."""
    run_dir = Path(run_dir)
    weights, config_path = run_dir / "model.safetensors", run_dir / "config.yaml"
    if not weights.is_file() or not config_path.is_file():
        raise ValueError(f"init_from {run_dir}: not a finished run directory (needs model.safetensors and config.yaml)")
    their_tasks = config_mod.load(config_path).tasks
    unknown = [t for t in task_map or {} if t not in their_tasks]
    if unknown:
        raise ValueError(f"init_task_map names {unknown[0]!r}, which the init_from run {run_dir} did not train on")
    return transplant(model, load_file(str(weights)), their_tasks, task_map)


class LearnerService:
    """Trains on batches from `sample`; publishes weights through `publish` every `weights_every` updates."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        tasks: Sequence[TaskInfo],
        learner_cfg: LearnerConfig,
        seed: int,
        sample: Callable[[int], Batch],
        publish: Callable[[dict], Any],
        batch_size: int,
        weights_every: int,
        prefetch: int = 4,
        frozen_trunk: bool = False,
    ):
        if weights_every < 1 or batch_size < 1 or prefetch < 0:
            raise ValueError(f"weights_every and batch_size must be >= 1 and prefetch >= 0, got "
                             f"{weights_every}, {batch_size}, {prefetch}")
        # Batches arrive as read-only views of the object store; torch warns about wrapping
        # them, but nothing writes to a batch.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        self.learner = Learner(model_cfg, tasks, learner_cfg, seed=seed)
        if frozen_trunk:  # train.freeze_trunk: only the per-task modules learn
            freeze_trunk(self.learner.model)
        self.sample = sample
        self.prefetch = prefetch
        self._put = publish
        self.batch_size = batch_size
        self.weights_every = weights_every
        self._queue: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._published: tuple[int, list] | None = None
        self._holdout: dict | None = None  # held-out data as device tensors (set_holdout)
        self._val_every = 0
        self._keep_best = False
        # The policy with the lowest mean held-out NLL so far: (that NLL, its updates, CPU weights).
        self._best: tuple[float, int, dict] | None = None
        self._busy_s = 0.0  # wall time inside updates
        self._wait_s = 0.0  # wall time waiting for a batch
        self._train_wall_s = 0.0  # wall time inside train()

    # -- batches -------------------------------------------------------------------------

    def _prefetch_loop(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.sample(self.batch_size)
                item = (batch, batch_to_tensors(batch, self.learner.device))
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        pass
        except BaseException as e:  # surfaced by the next train() call
            self._error = e

    def _next_batch(self) -> tuple[Batch, dict]:
        if self.prefetch == 0:
            batch = self.sample(self.batch_size)
            return batch, batch_to_tensors(batch, self.learner.device)
        if self._thread is None:
            self._thread = threading.Thread(target=self._prefetch_loop, name="prefetch", daemon=True)
            self._thread.start()
        deadline = time.monotonic() + BATCH_TIMEOUT_S
        while True:
            if self._error is not None:
                raise RuntimeError(f"batch prefetch failed: {type(self._error).__name__}: {self._error}")
            try:
                return self._queue.get(timeout=0.5)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no batch from the replay store in {BATCH_TIMEOUT_S:.0f} s") from None

    # -- training ------------------------------------------------------------------------

    def train(self, n: int, max_flops: float | None = None) -> dict:
        """Run `n` updates, or fewer: none once they have spent `max_flops` learner FLOPs (a budget's
        rest). Returns the mean of their metrics, summed time/FLOPs/tokens, the update counter,
        learner utilization so far, the latest published weights, and the held-out metrics
        measured meanwhile ("val": [(updates, {task: {"nll", "action_error"}})], see set_holdout)."""
        start = time.perf_counter()
        sums: dict[str, float] = {}
        trained = 0
        wait = 0.0
        done = 0
        val: list[tuple[int, dict]] = []
        while done < n and (max_flops is None or sums.get("learner/flops", 0.0) < max_flops):
            done += 1
            t0 = time.perf_counter()
            batch, tensors = self._next_batch()
            wait += time.perf_counter() - t0
            metrics = self.learner.step(batch, tensors)
            trained += int(batch.mask.sum())
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            if self.learner.updates % self.weights_every == 0:
                self.publish()
            if self._holdout is not None and self.learner.updates % self._val_every == 0:
                val.append((self.learner.updates, self.learner.validate(self._holdout)))
                self._remember_if_best(val[-1][1])
        self._wait_s += wait
        self._busy_s += sums.get("learner/update_s", 0.0)
        self._train_wall_s += time.perf_counter() - start
        totals = ("learner/update_s", "learner/flops")
        means = {k: (v if k in totals else v / max(done, 1)) for k, v in sums.items()}
        return {
            "updates": self.learner.updates,
            "metrics": means,
            "trained_timesteps": trained,
            "batch_wait_s": wait,
            "utilization": self.utilization(),
            "weights": self.weights(),
            "val": val,
        }

    def set_holdout(self, batch: Batch | None, every: int, keep_best: bool = False) -> None:
        """Measure the policy on `batch` (the replay store's `holdout()`) every `every` updates
        from now on (None: never); with `keep_best`, keep the policy whose mean NLL over tasks was
        the lowest (`publish(best=True)`, `export_weights(best=True)`)."""
        if every < 1:
            raise ValueError(f"validation interval must be >= 1, got {every}")
        self._holdout = None if batch is None else batch_to_tensors(batch, self.learner.device)
        self._val_every = every
        self._keep_best = keep_best

    def _remember_if_best(self, per_task: dict[str, dict[str, float]]) -> None:
        nll = float(np.mean([m["nll"] for m in per_task.values()]))
        if self._keep_best and (self._best is None or nll < self._best[0]):
            self._best = (nll, self.learner.updates, self.learner.weights())

    def best(self) -> dict | None:
        """{"updates", "val_nll"} of the policy kept by held-out selection (None: nothing kept)."""
        return None if self._best is None else {"updates": self._best[1], "val_nll": self._best[0]}

    def utilization(self) -> float:
        """Share of the wall time spent in train() that went into updates (not waiting for batches)."""
        return self._busy_s / self._train_wall_s if self._train_wall_s > 0 else 0.0

    # -- weights -------------------------------------------------------------------------

    def publish(self, best: bool = False) -> tuple[int, list]:
        """Publish the current weights once (with `best`, those held-out selection kept, if any);
        returns (version, [handle])."""
        # On Ray the handle (an object ref) travels inside a list so Ray hands it on as a
        # reference: each rollout actor fetches the weights itself, from its node's object store.
        if best and self._best is not None:
            self._published = (self._best[1], [self._put(self._best[2])])
        else:
            self._published = (self.learner.updates, [self._put(self.learner.weights())])
        return self._published

    def weights(self) -> tuple[int, list]:
        """The latest published (version, [handle]), publishing now if nothing was published yet."""
        return self._published if self._published is not None else self.publish()

    def set_observation_stats(self, stats: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        """Per-task observation normalization {task index: (mean, std)}; republishes the weights."""
        for i, (mean, std) in stats.items():
            # Arrays arrive read-only from the object store; the model keeps its own copies.
            self.learner.model.set_observation_stats(i, np.array(mean), np.array(std))
        self.publish()

    def set_return_stats(self, stats: dict[int, tuple[float, float, float, float]]) -> None:
        """Per-task returns of the return head's data {task index: (mean, std, min, max)} (see
        DecisionTransformer.set_return_stats); republishes the weights."""
        for i, values in stats.items():
            self.learner.model.set_return_stats(i, *values)
        self.publish()

    def init_from(self, run_dir: str, task_map: dict[str, str] | None = None) -> dict[str, list[str]]:
        """`init_weights_from` into this learner's model; republishes the weights."""
        report = init_weights_from(self.learner.model, Path(run_dir), task_map)
        self.publish()
        return report

    # -- files ---------------------------------------------------------------------------

    def save(self, directory: str) -> None:
        """The learner's checkpoint, and the policy held-out selection kept (BEST_FILE)."""
        self.learner.save(Path(directory))
        if self._best is not None:
            nll, updates, weights = self._best
            save_file(weights, str(Path(directory) / BEST_FILE),
                      metadata={"updates": str(updates), "val_nll": repr(nll)})

    def load(self, directory: str) -> int:
        """Restore a checkpoint; returns its update count."""
        self.learner.load(Path(directory))
        self._best = None
        best = Path(directory) / BEST_FILE
        if best.is_file():
            with safe_open(str(best), "pt") as f:
                meta = f.metadata()
            self._best = (float(meta["val_nll"]), int(meta["updates"]), load_file(str(best)))
        self.publish()
        return self.learner.updates

    def export_weights(self, path: str, best: bool = False) -> None:
        """Write the policy (with `best`, the one held-out selection kept, if any) as safetensors."""
        if best and self._best is not None:
            save_file(self._best[2], str(path))
        else:
            self.learner.export_weights(Path(path))

    def stop(self) -> None:
        """End the prefetch thread (before the actor is killed or the process exits)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
