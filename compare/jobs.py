"""Running a plan's jobs: one at a time in this process, or as Ray tasks; finished ones are skipped."""
from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from frontier.compare.plan import Job, Plan
from frontier.compare.spec import safe, select_closest
from frontier.distributed import config as config_mod


def job_done(out: Path, job: Job) -> bool:
    d = Path(out) / job.name
    if job.kind == "data":  # and holds as many episodes as the plan asks (a spec may grow its matrix)
        meta = d / "dataset.json"
        return meta.is_file() and json.loads(meta.read_text())["episodes"] >= job.episodes
    if job.kind == "select":
        return (d / "select.json").is_file()
    summary = d / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("status") == "finished"


def job_result(out: Path, job: Job) -> dict:
    """What a finished job left: dataset.json, select.json or summary.json."""
    d = Path(out) / job.name
    file = {"data": "dataset.json", "select": "select.json", "run": "summary.json"}[job.kind]
    return json.loads((d / file).read_text())


def run_job(out: str | Path, job: Job) -> dict:
    """Do one job (or nothing if it finished before); returns its result. Output of runs goes to
    <job dir>/log.txt."""
    out = Path(out)
    if job_done(out, job):
        return job_result(out, job)
    d = out / job.name
    d.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)  # one core per job: jobs run side by side
    if job.kind == "data":
        _collect(d, job)
    elif job.kind == "select":
        zero_shot = {}
        for cand, ev in zip(job.config["candidates"], job.deps):
            zero_shot[cand] = job_result(out, Job(ev, "run"))["tasks"][job.task]["eval_return_mean"]
        (d / "select.json").write_text(json.dumps({"closest": select_closest(zero_shot), "zero_shot_return": zero_shot},
                                                  indent=2))
    else:
        _train(out, d, job)
    return job_result(out, job)


def _collect(d: Path, job: Job) -> None:
    from frontier.envs.datasets import DatasetWriter, ProductionTimer
    from frontier.envs.registry import make_expert
    from frontier.envs.registry import get_task
    from frontier.envs.seeding import stream_seed

    source = make_expert(get_task(job.task), job.config["kind"])
    # A dataset with fewer episodes than asked is collected again from the same first seed (its
    # episodes come first again, so runs that read it read the same data); the old one goes
    # only once the new one is complete.
    old = d.with_name(f".{d.name}.short")
    if (d / "dataset.json").is_file():
        shutil.rmtree(old, ignore_errors=True)
        d.rename(old)
    with DatasetWriter(d, job.task, source.kind) as writer:
        first = stream_seed("compare-data", job.seed, job.task)
        episodes = ProductionTimer(source.episodes(job.episodes, first))
        for ep in episodes:
            writer.add(ep)
        writer.finish({"env_steps": int(source.env_steps), "cpu_s": episodes.cpu_s, "gpu_s": 0.0},
                      {"seed": first})
    shutil.rmtree(old, ignore_errors=True)


def _train(out: Path, d: Path, job: Job) -> None:
    from frontier.distributed.local_executor import LocalExecutor
    from frontier.distributed.trainer import Trainer

    cfg = copy.deepcopy(job.config)
    if job.init_from_select:
        chosen = job_result(out, Job(job.init_from_select, "select"))["closest"]
        cfg["init_from"] = f"seed{job.seed}/source/{safe(chosen)}"
        cfg["init_task_map"] = {chosen: cfg["tasks"][0]}  # chosen for sharing the target's spaces
    if cfg.get("init_from"):
        cfg["init_from"] = str(out.resolve() / cfg["init_from"])
    if job.budget:
        spent = sum(job_result(out, Job(c, "run"))["compute"]["learner_flops"] for c in job.charge)
        left = job.budget - spent
        if left <= 0:
            raise ValueError(f"{job.name}: the runs it is charged for spent {spent:g} FLOPs, "
                             f"the budget is {job.budget:g}")
        cfg.setdefault("train", {})["max_learner_flops"] = left
    run_cfg = config_mod.from_dict(cfg)
    resume = (d / "config.yaml").is_file()
    with open(d / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        summary = Trainer(run_cfg, d, LocalExecutor(), resume=resume, live=False).run()
    if summary["status"] != "finished":
        raise RuntimeError(f"run {d} ended {summary['status']}: {summary.get('stop_reason', '')}")


def job_options(job: Job, cluster_gpus: float) -> dict:
    """Ray resources of one job: a CPU each, and a GPU for a training run whose learner device can
    use one (`auto` or `cuda...`) on a cluster that has GPUs. Ray hides the GPUs from a task that
    asks for none (it empties CUDA_VISIBLE_DEVICES), so such a run would train on the CPU."""
    device = str(job.config.get("learner", {}).get("device", "auto")) if job.kind == "run" else "cpu"
    wants_gpu = cluster_gpus >= 1 and (device == "auto" or device.startswith("cuda"))
    return {"num_cpus": 1, "num_gpus": 1 if wants_gpu else 0}


def execute(plan: Plan, out: Path, serial: bool, address: str | None = None, log=print) -> dict[str, str]:
    """Run every job of the plan; returns {job name: error} for the jobs that failed (their
    dependents are not run). Finished jobs are skipped."""
    errors: dict[str, str] = {}
    todo = [j for j in plan.jobs if not job_done(out, j)]
    log(f"{len(plan.jobs)} jobs, {len(plan.jobs) - len(todo)} finished before, {len(todo)} to run")
    t0 = time.monotonic()
    if serial:
        failed: set[str] = set()
        for i, job in enumerate(todo):
            if any(dep in failed for dep in job.deps):
                failed.add(job.name)
                errors[job.name] = "a job it needs failed"
                continue
            try:
                run_job(out, job)
                log(f"[{time.monotonic() - t0:6.0f}s] done {job.name} ({i + 1}/{len(todo)})")
            except Exception as e:
                failed.add(job.name)
                errors[job.name] = f"{type(e).__name__}: {e}"
                log(f"[{time.monotonic() - t0:6.0f}s] FAILED {job.name}: {errors[job.name]}")
                traceback.print_exc(file=sys.stderr)
        return errors
    import ray

    owns = not ray.is_initialized()
    if owns:
        ray.init(address=address) if address else ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    try:
        remote = ray.remote(max_retries=0)(run_job)
        gpus = ray.cluster_resources().get("GPU", 0)
        # The driver submits a job once the jobs it needs have finished, in plan order, with at
        # most one job per cluster CPU in flight: earlier jobs (the main comparison, earlier
        # seeds) go first, so an interrupted compare has whole seeds rather than scattered runs.
        capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        finished = {j.name for j in plan.jobs if job_done(out, j)}
        waiting = [j for j in plan.jobs if j.name not in finished]
        running: dict = {}
        done = 0
        while waiting or running:
            for job in list(waiting):
                if len(running) >= capacity:
                    break
                if any(d in errors for d in job.deps):
                    waiting.remove(job)
                    errors[job.name] = "a job it needs failed"
                elif all(d in finished for d in job.deps):
                    waiting.remove(job)
                    running[remote.options(name=job.name, **job_options(job, gpus)).remote(str(out), job)] = job.name
            if not running:
                break
            ready, _ = ray.wait(list(running), num_returns=1)
            name = running.pop(ready[0])
            done += 1
            try:
                ray.get(ready[0])
                finished.add(name)
                log(f"[{time.monotonic() - t0:6.0f}s] done {name} ({done}/{len(todo)})")
            except Exception as e:
                cause = getattr(e, "cause", None) or e
                errors[name] = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                log(f"[{time.monotonic() - t0:6.0f}s] FAILED {name}: {errors[name]}")
    finally:
        if owns:
            ray.shutdown()
    return errors
