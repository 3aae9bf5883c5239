"""Monitoring: TensorBoard scalars, the live terminal view, and summary.json.

TensorBoard tags (global step = env steps; `/` in task names becomes `_`):
`return/<task>` (evaluation), `explore_return/<task>`, `normalized/<task>`, `loss/...`,
`entropy/<task>`, `temperature/<task>`, `replay/<task>/timesteps`, `throughput/...`,
`val/<task>/nll` and `val/<task>/action_error` (held-out expert data; during offline pretraining
the env steps stand still: TensorBoard's relative or wall-time axis shows those curves, and
val.jsonl has them against updates).
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from torch.utils.tensorboard import SummaryWriter

from . import run_log


def tag_name(task: str) -> str:
    return task.replace("/", "_")


def normalized_score(ret: float, random_return: float, expert_return: float) -> float:
    span = expert_return - random_return
    return (ret - random_return) / span if span != 0 else 0.0


def _standard_json(x):
    """`x` with every non-finite float replaced by None: JSON has no NaN or Infinity."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _standard_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_standard_json(v) for v in x]
    return x


def write_json_atomic(path: Path, data: dict) -> None:
    """Write standard JSON (non-finite numbers as null) to `path` via a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_standard_json(data), indent=2, allow_nan=False))
    os.replace(tmp, path)


class Monitor:
    """Collects a run's figures; writes them to TensorBoard, the terminal and summary.json."""

    def __init__(self, run_dir: Path, references: dict[str, tuple[float, float]], purge_step: int | None = None,
                 live: bool | None = None):
        self.run_dir = Path(run_dir)
        self.references = references
        self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_step)
        self.tasks = {t: {"eval_return_mean": None, "eval_return_std": 0.0, "eval_episodes": 0,
                          "success_rate": None, "explore_return": None, "replay_timesteps": 0, "val": None,
                          "batch_share": None}
                      for t in references}
        self.phase = "starting"
        self.progress = (0, 0)  # (updates done, updates planned)
        self.env_steps, self.wall_s = 0, None  # wall_s: None until the first status()
        self.rates: dict[str, float] = {}
        # the terminal itself, not run.log's copy: the live view's redraws stay out of the file
        self.console = Console(file=run_log.terminal(sys.stderr))
        live = sys.stderr.isatty() if live is None else live
        captured = run_log.capturing()  # then text printed meanwhile goes above the view through run_log
        self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False,
                         redirect_stdout=not captured, redirect_stderr=not captured) if live else None
        if self.live:
            self.live.start()
            run_log.show_above(self.console)
        self._last_line = 0.0

    # -- recording -----------------------------------------------------------------------

    def scalars(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            parts = k.split("/", 1)
            tag = f"{parts[0]}/{tag_name(parts[1])}" if len(parts) == 2 else k
            self.writer.add_scalar(tag, v, step)

    def evaluation(self, task: str, returns: list[float], step: int, successes: list[bool] | None = None) -> None:
        """An evaluation's episode returns of `task`, and their successes where the task has a
        success condition."""
        mean, std = float(np.mean(returns)), float(np.std(returns))
        rnd, exp = self.references[task]
        self.tasks[task].update(eval_return_mean=mean, eval_return_std=std, eval_episodes=len(returns))
        self.writer.add_scalar(f"return/{tag_name(task)}", mean, step)
        self.writer.add_scalar(f"normalized/{tag_name(task)}", normalized_score(mean, rnd, exp), step)
        if successes:
            rate = float(np.mean(successes))
            self.tasks[task]["success_rate"] = rate
            self.writer.add_scalar(f"success/{tag_name(task)}", rate, step)

    def validation(self, per_task: dict[str, dict[str, float]], step: int, updates: int) -> None:
        """The policy's held-out metrics ({task: {"nll", "action_error"}}) after `updates` updates:
        TensorBoard, the terminal view, summary.json, and one line of val.jsonl."""
        for task, metrics in per_task.items():
            self.tasks[task]["val"] = {**metrics, "updates": updates}
            for name, v in metrics.items():
                self.writer.add_scalar(f"val/{tag_name(task)}/{name}", v, step)
        with open(self.run_dir / "val.jsonl", "a") as f:
            f.write(json.dumps({"updates": updates, "env_steps": step, "tasks": per_task}) + "\n")

    def task_shares(self, shares: dict[str, float], step: int) -> None:
        """The replay store's batch share per task (replay.task_sampling val_nll)."""
        for task, share in shares.items():
            self.tasks[task]["batch_share"] = share
            self.writer.add_scalar(f"replay/{tag_name(task)}/share", share, step)

    def exploration(self, task: str, returns: list[float], step: int) -> None:
        mean = float(np.mean(returns))
        self.tasks[task]["explore_return"] = mean
        self.writer.add_scalar(f"explore_return/{tag_name(task)}", mean, step)

    def replay(self, stats: dict[str, dict], step: int) -> None:
        for task, s in stats.items():
            self.tasks[task]["replay_timesteps"] = s["timesteps"]
            self.writer.add_scalar(f"replay/{tag_name(task)}/timesteps", s["timesteps"], step)

    def throughput(self, rates: dict[str, float], step: int) -> None:
        self.rates = rates
        for k, v in rates.items():
            self.writer.add_scalar(f"throughput/{k}", v, step)

    def status(self, phase: str, updates: int, planned: int, env_steps: int, wall_s: float) -> None:
        self.phase, self.progress = phase, (updates, planned)
        self.env_steps, self.wall_s = env_steps, wall_s
        if self.live:
            self.live.update(self._render())
        if time.monotonic() - self._last_line > 15:
            self._last_line = time.monotonic()
            self._line(phase, updates, planned, env_steps, wall_s)

    def _line(self, phase: str, updates: int, planned: int, env_steps: int, wall_s: float) -> None:
        """One plain progress line: into run.log, and onto the terminal where no live view shows it."""
        scores = " ".join(
            f"{t}={normalized_score(s['eval_return_mean'], *self.references[t]):.2f}"
            + ("" if s["success_rate"] is None else f" (success {s['success_rate']:.2f})")
            for t, s in self.tasks.items() if s["eval_return_mean"] is not None
        )
        val = " ".join(f"{t}={s['val']['nll']:.2f}" for t, s in self.tasks.items() if s["val"] is not None)
        line = (f"[{wall_s:7.0f}s] {phase:9s} updates {updates}/{planned} env_steps {env_steps} "
                f"steps/s {self.rates.get('env_steps_per_s', 0):.0f} {scores}"
                + (f" | held-out nll {val}" if val else ""))
        with open(self.run_dir / "run.log", "a") as f:
            f.write(line + "\n")
        if not self.live:
            self.console.print(line, highlight=False, markup=False, soft_wrap=True)  # one line, as in run.log

    # -- output --------------------------------------------------------------------------

    def _render(self):
        updates, planned = self.progress
        head = Text(
            f"frontier  {self.phase}  updates {updates}/{planned}  env steps {self.env_steps}  "
            f"{self.rates.get('env_steps_per_s', 0):.0f} steps/s  {self.rates.get('updates_per_s', 0):.1f} upd/s  "
            f"learner util {self.rates.get('learner_utilization', 0):.2f}  {self.wall_s or 0:.0f}s"
        )
        table = Table(box=None, header_style="bold")
        with_success = any(s["success_rate"] is not None for s in self.tasks.values())
        for col in ("task", "eval return", "normalized", *(("success",) if with_success else ()),
                    "explore return", "held-out nll", "replay steps"):
            table.add_column(col, justify="left" if col == "task" else "right")
        for task, s in self.tasks.items():
            ev, rate = s["eval_return_mean"], s["success_rate"]
            table.add_row(
                task,
                "-" if ev is None else f"{ev:.1f} ± {s['eval_return_std']:.1f}",
                "-" if ev is None else f"{normalized_score(ev, *self.references[task]):.2f}",
                *(("-" if rate is None else f"{rate:.2f}",) if with_success else ()),
                "-" if s["explore_return"] is None else f"{s['explore_return']:.1f}",
                "-" if s["val"] is None else f"{s['val']['nll']:.3f}",
                str(s["replay_timesteps"]),
            )
        return Group(head, table)

    def summary(self, status: str, env_steps: int, updates: int, wall_s: float, compute: dict, faults: dict) -> dict:
        tasks = {}
        for task, s in self.tasks.items():
            rnd, exp = self.references[task]
            ev = s["eval_return_mean"]
            tasks[task] = {
                "eval_return_mean": ev,  # None (null) until the run's first evaluation
                "eval_return_std": s["eval_return_std"],
                "eval_episodes": s["eval_episodes"],
                "random_return": rnd,
                "expert_return": exp,
                "normalized_score": normalized_score(ev, rnd, exp) if ev is not None else None,
                # share of the last evaluation's episodes that met the task's success condition;
                # None (null) for tasks without one, or before the first evaluation
                "success_rate": s["success_rate"],
                # the policy on the held-out expert episodes, the latest measurement:
                # {"nll", "action_error", "updates"}; None (null) without held-out data
                "val": s["val"],
                # share of each batch drawn from this task now (replay.task_sampling val_nll);
                # None (null) under fixed task weights
                "batch_share": s["batch_share"],
            }
        data = {
            "status": status,
            "env_steps": int(env_steps),
            "learner_updates": int(updates),
            "wall_s": float(wall_s),
            "throughput": {
                "env_steps_per_s": float(self.rates.get("env_steps_per_s", 0.0)),
                "trained_timesteps_per_s": float(self.rates.get("trained_timesteps_per_s", 0.0)),
                "learner_utilization": float(self.rates.get("learner_utilization", 0.0)),
            },
            "tasks": tasks,
            "compute": compute,
            "faults": faults,
        }
        write_json_atomic(self.run_dir / "summary.json", data)
        self.writer.flush()
        return data

    def close(self) -> None:
        if self.wall_s is not None:  # the last state, in run.log and (without a live view) on the terminal
            self._line(self.phase, *self.progress, self.env_steps, self.wall_s)
        if self.live:
            self.live.update(self._render())
            run_log.show_above(None)
            self.live.stop()
        self.writer.close()
