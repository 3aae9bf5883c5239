"""The training run: expert collection, offline pretraining, online fine-tuning (ODT), evaluation,
checkpoints, TensorBoard and summary.json.

`SerialRunner` wires the same components the Ray system turns into actors
(RolloutWorker, ReplayStore, Learner) in one process, for debugging and tests.

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

import json
import math
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from agents.learner import Learner
from agents.spaces import Box
from agents.storage import sha256_file
from agents.surgery import freeze_trunk, transplant
from distributed import config as config_mod
from distributed.config import RunConfig
from distributed.monitor import Monitor, write_json_atomic
from distributed.replay import ReplayStore
from distributed.rollout import RolloutWorker, collect_expert
from distributed.threads import ThreadGovernor
from envs.references import reference_returns
from envs.registry import get_task
from envs.seeding import stream_seed

KEEP_CHECKPOINTS = 3


def resolve_tasks(names: list[str]):
    """TaskSpecs for `names`; KeyError naming an unknown task."""
    return [get_task(n) for n in names]


# run_state.json key of a checkpoint's manifest: {file name: {"bytes": size, "sha256": hex digest}}.
MANIFEST_KEY = "files"


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why the checkpoint directory `ckpt` cannot be resumed from; None if it is intact (every file
    of its manifest present with the size and hash it was written with)."""
    try:
        state = json.loads((ckpt / "run_state.json").read_text())
        manifest = state[MANIFEST_KEY] if MANIFEST_KEY in state else None
    except (OSError, ValueError, TypeError) as e:
        return f"run_state.json unreadable ({type(e).__name__})"
    if manifest is None:  # written before checkpoints carried a manifest: the files must exist
        names = ("model.safetensors", "learner_state.pt")
        missing = [n for n in names if not (ckpt / n).is_file()]
        return f"{missing[0]} missing" if missing else None
    for name, want in manifest.items():
        path = ckpt / name
        if not path.is_file():
            return f"{name} missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {want['bytes']} when written"
        if sha256_file(path) != want["sha256"]:
            return f"{name} does not match the hash it was written with"
    return None


def latest_checkpoint(run_dir: Path, skipped: list[tuple[Path, str]] | None = None) -> Path | None:
    """The newest intact checkpoint of `run_dir`; each newer one that is not intact is appended to
    `skipped` as (directory, why)."""
    for ckpt in sorted((Path(run_dir) / "checkpoints").glob("ckpt-*"), reverse=True):
        why = checkpoint_problem(ckpt)
        if why is None:
            return ckpt
        if skipped is not None:
            skipped.append((ckpt, why))
    return None


# Expert data can be nearly constant in some dimensions (an LQR-held pendulum, RAM bytes
# that never change): without a floor, the first deviation at run time would reach the
# model as a huge input.
MIN_OBSERVATION_STD = 0.01


def observation_stats(episodes) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of vector observations, std floored at MIN_OBSERVATION_STD."""
    obs = np.concatenate([e.observations for e in episodes]).astype(np.float64)
    return obs.mean(0), np.maximum(obs.std(0), MIN_OBSERVATION_STD)


# The replay statistic each data-relative rule of train.return_targets takes as its reference return.
DATA_TARGET_STAT = {"data": "best_return", "top": "top_return"}


def data_targets(specs, references: dict, stats: dict, mode: str, rule: str, scale: float) -> dict[str, float]:
    """{task: return target} for rollout `mode` from the replay store's stats under `rule` ("data":
    the best return ever stored, "top": the mean of the best 10% stored now): `scale` times the
    reference return's distance from the random return, capped at the task's own target for
    `mode` and never below the reference; tasks with no episode yet are left out."""
    out = {}
    for spec in specs:
        best = stats[spec.name][DATA_TARGET_STAT[rule]]
        if best is None:
            continue
        random_ret = references[spec.name][0]
        above = random_ret + scale * (best - random_ret)
        out[spec.name] = min(spec.return_target(mode), max(best, above))
    return out


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


class RunState:
    """Counters a run accumulates; saved with each checkpoint and restored by --resume."""

    def __init__(self):
        self.updates = 0
        self.env_steps_by_source: dict[str, int] = {}
        self.actor_cpu_s = 0.0
        self.learner_device_s = 0.0
        self.learner_flops = 0.0
        self.trained_timesteps = 0
        self.wall_s = 0.0
        self.experts_done = False
        self.episodes_dropped = 0
        self.episodes_dropped_by_cause: dict[str, int] = {}  # "raised", "non_finite", "hung"
        self.actor_restarts = 0
        self.rollout_actors_lost = 0  # times a rollout actor was found down (Ray driver)
        self.rollout_calls_timed_out = 0  # rollout actors killed for a call past rollout.call_timeout_s (Ray driver)
        self.shards_quarantined = 0  # unreadable replay shards moved aside by --resume
        self.core_restores = 0  # times the learner and replay store actors were rebuilt after one was lost (Ray driver)
        self.updates_redone = 0  # updates made again since: those after the checkpoint the learner came back from

    @property
    def env_steps(self) -> int:
        return sum(self.env_steps_by_source.values())

    def add_steps(self, source: str, n: int) -> None:
        self.env_steps_by_source[source] = self.env_steps_by_source.get(source, 0) + int(n)

    def add_dropped(self, by_cause: dict[str, int]) -> None:
        """Count dropped episodes, {cause: n} (envs.deadline.fault_cause)."""
        for cause, n in by_cause.items():
            self.episodes_dropped += n
            self.episodes_dropped_by_cause[cause] = self.episodes_dropped_by_cause.get(cause, 0) + n

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict) -> "RunState":
        """A checkpoint's counters; one it lacks (written by an older release) keeps its default."""
        s = cls()
        s.__dict__.update(d)
        return s


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line_error(e: BaseException) -> str:
    """"Type: message" on one line, for summary.json: an error raised in a Ray actor arrives as a
    RayTaskError whose text holds colour codes and the remote traceback; its cause is what happened."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    lines = [line.strip() for line in _ANSI.sub("", str(e)).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (what timeout, kill, Kubernetes, Slurm and `ray job stop` send). A
    KeyboardInterrupt, so that fault handlers for Exception let it through, and so that Ray's
    blocking calls, which turn any other exception from a signal handler into a SystemError,
    stop on it (they re-raise it as a plain KeyboardInterrupt: `finish` remembers the signal)."""


# Exit status of `frontier train` by how the run ended (documented in the README).
EXIT_CODES = {"finished": 0, "failed": 1, "interrupted": 130, "terminated": 143}


class Runner:
    """What every runner shares: the run directory, counters, checkpoints, monitoring, summary.json.

    Subclasses provide the learner (`save_learner(dir)`), and the loop (`run`).
    """

    # Whether the runner implements init_from, freeze_trunk and max_learner_flops.
    supports_init_and_budget = False

    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool = False, live: bool | None = None,
                 strict: bool = False):
        self.cfg = cfg
        self.strict = strict  # --resume: an unreadable replay shard stops the run instead of being quarantined
        self.run_dir = Path(run_dir)
        if not self.supports_init_and_budget and (cfg.init_from or cfg.train.freeze_trunk
                                                  or cfg.train.max_learner_flops):
            raise ValueError("init_from, train.freeze_trunk and train.max_learner_flops need the serial runner (--serial)")
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

    @property
    def planned_updates(self) -> int:
        return self.cfg.train.pretrain_updates + self.cfg.train.online_updates

    @property
    def wall_s(self) -> float:
        return time.monotonic() - self._t0

    def save_learner(self, directory: Path) -> None:
        raise NotImplementedError

    def vector_tasks(self) -> list[int]:
        """Indices of the tasks with vector observations (normalized with the expert data's statistics)."""
        return [i for i, t in enumerate(self.infos) if isinstance(t.observation, Box) and not t.observation.is_image]

    def checkpoint(self) -> Path:
        """Write ckpt-<updates>/ atomically (temporary directory, then rename); keep the last few."""
        self.state.wall_s = self.wall_s
        root = self.run_dir / "checkpoints"
        final = root / f"ckpt-{self.state.updates:08d}"
        tmp = root / f".tmp-{self.state.updates:08d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self.save_learner(tmp)
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

    def write_summary(self, status: str, **extra) -> dict:
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
        t = self.cfg.train
        scale = t.eval_target_scale if mode == "eval" else t.explore_target_scale
        return data_targets(self.specs, self.references, stats(), mode, t.return_targets, scale)

    def record_episodes(self, episodes, kind: str, targets: dict[str, float] | None = None) -> None:
        """Log the returns of evaluation ("eval") or exploration ("explore") episodes; an
        evaluation's line in evals.jsonl records the return targets it was conditioned on
        (`targets`, the tasks' own where absent), so `frontier eval` can condition alike."""
        returns: dict[str, list[float]] = {}
        successes: dict[str, list[bool]] = {}  # tasks with a success condition only
        for e in episodes:
            returns.setdefault(e.task, []).append(e.ret)
            if e.success is not None:
                successes.setdefault(e.task, []).append(bool(e.success))
        for task, r in returns.items():
            if kind == "eval":
                self.monitor.evaluation(task, r, self.state.env_steps, successes.get(task))
            else:
                self.monitor.exploration(task, r, self.state.env_steps)
        if kind == "eval":
            s = self.state
            line = {"updates": s.updates, "env_steps": s.env_steps, "learner_flops": s.learner_flops,
                    "learner_device_s": s.learner_device_s, "actor_cpu_s": s.actor_cpu_s, "returns": returns,
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

    def account_update(self, metrics: dict[str, float], trained_timesteps: int) -> None:
        s = self.state
        s.learner_device_s += metrics["learner/update_s"]
        s.learner_flops += metrics["learner/flops"]
        s.trained_timesteps += trained_timesteps

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
            return self.write_summary("finished")
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


class SerialRunner(Runner):
    """One process, no Ray: the same RolloutWorker, ReplayStore and Learner, called in turn."""

    supports_init_and_budget = True

    def __init__(self, cfg: RunConfig, run_dir: Path, resume: bool = False, live: bool | None = None,
                 strict: bool = False):
        super().__init__(cfg, run_dir, resume, live, strict)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.learner = Learner(cfg.model, self.infos, cfg.learner, seed=cfg.seed)
        # Sharing the machine's cores with rollouts and whatever else runs on it: size the
        # learner's thread pool to the cores left free (distributed/threads.py).
        self.threads = ThreadGovernor(max_threads=torch.get_num_threads())
        if cfg.init_from and self.resume_from is None:  # a checkpoint already holds the initialized weights
            init_weights_from(self.learner.model, Path(cfg.init_from), cfg.init_task_map)
        if cfg.train.freeze_trunk:
            freeze_trunk(self.learner.model)
        self.replay = ReplayStore(self.infos, cfg.replay.capacity, cfg.replay.offline_share, cfg.model.context_len,
                                  cfg.replay.task_weights, self.run_dir / "replay", seed=cfg.seed,
                                  eviction=cfg.replay.eviction)
        if resume:
            restored, quarantined = self.replay.restore(self.strict)
            self.state.shards_quarantined += quarantined
            # Expert data acknowledged before a crash is in replay/: never collect it twice.
            self.state.experts_done |= any(v["offline_timesteps"] for v in self.replay.stats().values())
            if self.resume_from is not None:
                self.learner.load(self.resume_from)
            print(f"resumed {self.run_dir}: {self.state.updates} updates, {restored} episodes restored", flush=True)
        n = len(self.specs)
        per_worker = max(1, math.ceil(cfg.rollout.envs_per_worker / n)) * n
        self.explorer = RolloutWorker(cfg.tasks, cfg.tasks, cfg.model, "explore", per_worker, cfg.seed, 0)
        # Evaluation runs every episode of every task side by side: one batched forward per step.
        eval_envs = n * max(cfg.train.eval_episodes, cfg.train.final_eval_episodes)
        self.evaluator = RolloutWorker(cfg.tasks, cfg.tasks, cfg.model, "eval", eval_envs, cfg.seed, 1)

    def save_learner(self, directory: Path) -> None:
        self.learner.save(directory)

    def _tick(self, phase: str) -> None:
        self.monitor.status(phase, self.state.updates, self.planned_updates, self.state.env_steps, self.wall_s)
        if time.monotonic() - self._last_summary > self.cfg.summary_every_s:
            self.monitor.replay(self.replay.stats(), self.state.env_steps)
            self.write_summary("running")

    # -- the pieces ----------------------------------------------------------------------

    def collect_experts(self) -> None:
        cfg = self.cfg
        for i, spec in enumerate(self.specs):
            kind = cfg.experts.sources.get(spec.name, cfg.experts.source)
            eps, counts = collect_expert(spec.name, kind, cfg.experts.episodes, stream_seed("expert", cfg.seed, spec.name))
            self.replay.add(eps, offline=True)
            self.state.add_steps(kind, counts["env_steps"])
            self.state.actor_cpu_s += counts["cpu_s"]
            self.state.add_dropped(counts["dropped_by_cause"])
            self.monitor.status("experts", 0, self.planned_updates, self.state.env_steps, self.wall_s)
        self.state.experts_done = True

    def set_observation_stats(self) -> None:
        for i in self.vector_tasks():
            mean, std = observation_stats(self.replay.episodes(self.infos[i].name))
            self.learner.model.set_observation_stats(i, mean, std)

    def update(self) -> None:
        batch = self.replay.sample(self.cfg.train.batch_size)
        self.threads.tick()
        metrics = self.learner.step(batch)
        s = self.state
        s.updates = self.learner.updates
        self.account_update(metrics, int(batch.mask.sum()))
        if s.updates % 50 == 0:
            self.monitor.scalars(metrics, s.env_steps)
        if s.updates % self.cfg.train.eval_every == 0:
            self.evaluate(self.cfg.train.eval_episodes)
        if s.updates % self.cfg.checkpoint_every == 0:
            self.checkpoint()

    def evaluate(self, episodes: int) -> None:
        ev = self.evaluator
        ev.set_weights(self.state.updates, self.learner.weights())
        targets = self.targets(self.replay.stats, "eval")
        ev.set_targets(targets or {})
        before = ev.counters()
        eps = ev.evaluate(episodes)
        self.account(before, ev.counters(), "eval")
        self.record_episodes(eps, "eval", targets)

    def explore(self) -> None:
        ex = self.explorer
        ex.set_weights(self.state.updates, self.learner.weights())
        ex.set_targets(self.targets(self.replay.stats, "explore") or {})
        before = ex.counters()
        eps = ex.collect(self.cfg.train.explore_steps_per_round)
        self.account(before, ex.counters(), "explore")
        self.replay.add(eps)
        self.record_episodes(eps, "explore")

    # -- the run -------------------------------------------------------------------------

    def run(self) -> dict:
        return self.finish(self._loop)

    def out_of_budget(self) -> bool:
        budget = self.cfg.train.max_learner_flops
        return bool(budget) and self.state.learner_flops >= budget

    def _loop(self) -> None:
        cfg, s = self.cfg, self.state
        if not s.experts_done:
            self.collect_experts()
        if self.resume_from is None:  # a checkpoint carries the statistics inside the model
            self.set_observation_stats()
        while s.updates < cfg.train.pretrain_updates and not self.out_of_budget():
            self.update()
            self._tick("pretrain")
        while s.updates < self.planned_updates and not self.out_of_budget():
            if cfg.train.max_wall_s and self.wall_s > cfg.train.max_wall_s:
                break
            self.explore()
            for _ in range(min(cfg.train.updates_per_round, self.planned_updates - s.updates)):
                if self.out_of_budget():
                    break
                self.update()
                self._tick("online")
        self.monitor.status("final eval", s.updates, self.planned_updates, s.env_steps, self.wall_s)
        self.evaluate(cfg.train.final_eval_episodes)
        self.monitor.replay(self.replay.stats(), s.env_steps)
        self.learner.export_weights(self.run_dir / "model.safetensors")
