"""The comparison behind `frontier compare` (distributed/compare_cli.py): generalist versus closest
specialist on a target task at equal compute.

    frontier compare configs/compare/idp-2core.yaml                # Ray tasks, 1 CPU each
    frontier compare configs/compare/idp-2core.yaml --serial       # one process
    frontier compare SPEC.yaml --out DIR --address ray://head:10001

For every seed, these arms train on the target T under one budget of learner FLOPs each,
pretraining included:
  scratch     T's demonstrations only (offline, then online ODT fine-tuning);
  specialist  the single-task model of the source closest to T, fine-tuned on T (the
              source model's training is charged to the arm);
  related     multi-task pretraining on the `related` sources, then fine-tuning on T;
  generalist  multi-task pretraining on every source, then fine-tuning on T; and before
              fine-tuning, its zero-shot score (T's adapter and head untrained) and its
              few-shot score (adapter/head/task-embedding trained on a few demonstrations
              with the transformer frozen).
A transfer matrix fine-tunes each task's single-task model on each other task at a small
budget, against scratch on that task at the same budget.

Every piece of work is a job with a directory under the output directory: an expert
dataset (`seed<s>/data/<task>`, collected once per task and seed and read by every run that
needs it) or a normal run directory (config.yaml, tb/, checkpoints/, evals.jsonl,
summary.json). Jobs run as Ray tasks with one CPU each (training runs a GPU too where the cluster
has GPUs: `job_options`), each waiting for the jobs it needs;
`--serial` runs them in order in this process. A finished job (dataset.json, or
summary.json with status finished) is skipped on the next invocation and an unfinished
run resumes from its last checkpoint, so an interrupted compare continues where it stopped.
The report (report.md, PNGs, results.json) is written from whatever has finished.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from distributed import config as config_mod

ARMS = ("scratch", "specialist", "related", "generalist")
MEASURES = ("list", "spaces")
# Keys of the base run config that compare sets itself for every run.
RESERVED_RUN_KEYS = ("tasks", "seed", "init_from", "init_task_map")
FLOPS_KEYS = ("budget_flops", "source_flops", "pretrain_flops", "matrix_flops")


@dataclass
class ClosestConfig:
    measure: str = "list"
    """How the specialist's source is chosen: "list" (the first of `order`) or "spaces" (among the
    sources with T's observation and action spaces, the one whose single-task model, run on T as
    it is, returns the most)."""
    order: list[str] = field(default_factory=list)
    """Sources, closest to T first. Required for "list"; for "spaces", the fallback when no source
    shares T's spaces (without it that case is an error)."""


@dataclass
class FewShotConfig:
    episodes: int = 5
    """Demonstrations of T for few-shot adaptation."""
    updates: int = 200
    """Updates of T's adapter, head and task embedding on them, with the pretrained transformer frozen."""


@dataclass
class CompareSpec:
    name: str = ""
    """Name of the comparison (the default output directory's last part)."""
    target: str = ""
    """The target task T."""
    sources: list[str] = field(default_factory=list)
    """Source tasks: the generalist pretrains on all of them."""
    related: list[str] = field(default_factory=list)
    """The sources nearest to T, for the related arm's pretraining."""
    closest: ClosestConfig = field(default_factory=ClosestConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """One run of every arm per seed."""
    budget_flops: float = 0.0
    """Learner FLOPs per arm, pretraining and source models included."""
    source_flops: float = 0.0
    """Learner FLOPs of each single-task source model."""
    pretrain_flops: float = 0.0
    """Learner FLOPs of the related and generalist multi-task pretraining."""
    matrix_flops: float = 0.0
    """Learner FLOPs per transfer-matrix cell, the source model included (0: no matrix)."""
    expert_episodes: int = 20
    """Expert episodes per source task and seed for pretraining and single-task models."""
    target_episodes: int = 20
    """Demonstrations of the target (and of every matrix target) that fine-tuning and scratch get."""
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)
    levels: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.95])
    """Normalized scores whose compute cost the report tabulates."""
    out: str = ""
    """Default output directory ("": runs/compare-<name>)."""
    run: dict = field(default_factory=dict)
    """Base run config of every run (model, learner, replay, train, experts.source/sources,
    rollout, ...; see configs/quick.yaml). train.pretrain_updates + online_updates must be
    enough for the FLOPs budgets to stop training before they do."""


# -- the spec ----------------------------------------------------------------------------


def load_spec(path: str | Path) -> CompareSpec:
    """Read and check a spec (ValueError naming the offending key or value)."""
    return spec_from_dict(config_mod.read_yaml_mapping(path, "spec file"))


def spec_from_dict(data: dict) -> CompareSpec:
    data = copy.deepcopy(data)
    run = data.pop("run", {})
    if not isinstance(run, dict):
        raise ValueError(f"config key 'run' must be a mapping, got {run!r}")
    for key in FLOPS_KEYS:
        # YAML 1.1 reads 4.0e8 (no sign in the exponent) as a string; take it as the number it means.
        if isinstance(data.get(key), str):
            try:
                data[key] = float(data[key])
            except ValueError:
                raise ValueError(f"config key '{key}' must be a number, got {data[key]!r}") from None
    spec = config_mod._build(CompareSpec, data)
    spec.run = run
    validate_spec(spec)
    return spec


def validate_spec(spec: CompareSpec) -> None:
    from envs.registry import get_task

    if not spec.name:
        raise ValueError("config key 'name' must be set")
    if not spec.target:
        raise ValueError("config key 'target' must name the target task")
    if not spec.sources:
        raise ValueError("config key 'sources' must name at least one source task")
    for key, names in {"target": [spec.target], "sources": spec.sources, "related": spec.related,
                       "closest.order": spec.closest.order}.items():
        for n in names:
            try:
                get_task(n)
            except KeyError as e:
                raise ValueError(f"config key '{key}': {e.args[0]}") from None
    if spec.target in spec.sources:
        raise ValueError(f"config key 'sources': the target {spec.target!r} cannot be a source")
    for key, names in {"sources": spec.sources, "related": spec.related, "seeds": spec.seeds,
                       "closest.order": spec.closest.order}.items():
        if len(set(names)) != len(names):
            raise ValueError(f"config key '{key}' lists an entry twice: {names}")
    for key, names in {"related": spec.related, "closest.order": spec.closest.order}.items():
        outside = [n for n in names if n not in spec.sources]
        if outside:
            raise ValueError(f"config key '{key}': {outside[0]!r} is not in 'sources'")
    if not spec.related:
        raise ValueError("config key 'related' must name at least one source")
    if spec.closest.measure not in MEASURES:
        raise ValueError(f"config key 'closest.measure' must be one of {', '.join(MEASURES)}, "
                         f"got {spec.closest.measure!r}")
    if spec.closest.measure == "list" and not spec.closest.order:
        raise ValueError("config key 'closest.order' must list sources for closest.measure 'list'")
    if spec.closest.measure == "spaces":
        same_spaces(spec.target, spec.sources, spec.closest.order)  # raises when neither works
    if not spec.seeds:
        raise ValueError("config key 'seeds' must list at least one seed")
    for key in ("budget_flops", "source_flops", "pretrain_flops"):
        if getattr(spec, key) <= 0:
            raise ValueError(f"config key '{key}' must be > 0, got {getattr(spec, key)}")
    if spec.matrix_flops < 0:
        raise ValueError(f"config key 'matrix_flops' must be >= 0, got {spec.matrix_flops}")
    for key in ("source_flops", "pretrain_flops"):
        if getattr(spec, key) >= spec.budget_flops:
            raise ValueError(f"config key '{key}' ({getattr(spec, key):g}) must be below budget_flops "
                             f"({spec.budget_flops:g}): the arm would have nothing left for fine-tuning")
    if spec.matrix_flops and spec.matrix_flops <= spec.source_flops:
        raise ValueError(f"config key 'matrix_flops' ({spec.matrix_flops:g}) must exceed source_flops "
                         f"({spec.source_flops:g}), which every transferred cell pays first")
    for key in ("expert_episodes", "target_episodes", "few_shot.episodes", "few_shot.updates"):
        v = getattr(spec.few_shot, key.split(".")[1]) if "." in key else getattr(spec, key)
        if v <= 0:
            raise ValueError(f"config key '{key}' must be > 0, got {v}")
    if spec.few_shot.episodes > spec.target_episodes:
        raise ValueError(f"config key 'few_shot.episodes' ({spec.few_shot.episodes}) exceeds target_episodes "
                         f"({spec.target_episodes}): few-shot draws from the target's demonstrations")
    for lv in spec.levels:
        if not 0 < lv <= 1.5:
            raise ValueError(f"config key 'levels' holds {lv}, outside (0, 1.5]")
    reserved = [k for k in RESERVED_RUN_KEYS if k in spec.run]
    if reserved:
        raise ValueError(f"config key 'run.{reserved[0]}' is set by compare for every run; remove it")
    try:
        base = config_mod.from_dict({**spec.run, "tasks": all_tasks(spec)})
    except ValueError as e:
        raise ValueError(f"in 'run': {e}") from None
    for task in all_tasks(spec):
        kind = base.experts.sources.get(task, base.experts.source)
        if kind not in get_task(task).experts:
            raise ValueError(f"config key 'run.experts': task {task!r} has no expert of kind {kind!r} "
                             f"(kinds: {', '.join(sorted(get_task(task).experts))})")


def all_tasks(spec: CompareSpec) -> list[str]:
    return [spec.target, *spec.sources]


def same_spaces(target: str, sources: list[str], fallback: list[str] = ()) -> tuple[list[str], bool]:
    """(the sources whose observation and action spaces equal the target's, False), or
    (`fallback`, True) when none does; ValueError when neither gives a candidate."""
    from envs.registry import get_task

    t = get_task(target).info()
    matching = [s for s in sources if shares_spaces(s, target)]
    if matching:
        return matching, False
    if fallback:
        return list(fallback), True
    raise ValueError(f"closest.measure 'spaces': no source shares {target}'s spaces ({t.observation}, {t.action}); "
                     f"list sources in closest.order to fall back on")


def shares_spaces(a: str, b: str) -> bool:
    """Whether tasks a and b have the same observation and action spaces."""
    from envs.registry import get_task

    x, y = get_task(a).info(), get_task(b).info()
    return x.observation == y.observation and x.action == y.action


def source_task_map(source: str, target: str) -> dict[str, str]:
    """init_task_map for fine-tuning `source`'s single-task model on `target`: with the same
    spaces the whole policy (adapters and head too) carries over; otherwise only the trunk."""
    return {source: target} if shares_spaces(source, target) else {}


def select_closest(zero_shot_returns: dict[str, float]) -> str:
    """The candidate with the highest zero-shot return on T (ties: the earlier one)."""
    if not zero_shot_returns:
        raise ValueError("no candidate sources to choose from")
    return max(zero_shot_returns, key=lambda s: (zero_shot_returns[s], -list(zero_shot_returns).index(s)))


# -- the plan ----------------------------------------------------------------------------


def safe(task: str) -> str:
    return task.replace("/", "_")


@dataclass
class Job:
    """One unit of work; `name` is its directory relative to the output directory."""

    name: str
    kind: str
    """"data" (an expert dataset), "run" (a training run) or "select" (pick the closest source)."""
    deps: list[str] = field(default_factory=list)
    """Jobs that must finish first."""
    task: str = ""
    """data: the task. select: the target."""
    episodes: int = 0
    """data: episodes to collect."""
    seed: int = 0
    config: dict = field(default_factory=dict)
    """run: the RunConfig as a dict (init_from holds a job name, resolved at run time)."""
    charge: list[str] = field(default_factory=list)
    """run: jobs whose learner FLOPs come out of this run's budget (its max_learner_flops is
    `budget` minus theirs)."""
    budget: float = 0.0
    """run: the FLOPs budget shared with `charge`."""
    init_from_select: str = ""
    """run: a select job whose chosen source's model initializes this run."""


@dataclass
class Arm:
    """What one arm of one seed consists of, for the cost accounting."""

    name: str
    seed: int
    final: str
    """The run on T whose evaluations give the arm's curve."""
    charged: list[str]
    """Earlier jobs (source models, pretraining, selection evaluations) whose costs the arm pays."""
    data: dict[str, int]
    """task -> demonstrations used; each task's dataset is charged pro rata, once per arm."""


@dataclass
class Plan:
    jobs: list[Job]
    arms: list[Arm]
    cells: list[dict]
    """Transfer-matrix cells: {"seed", "source", "target", "job", "scratch"} (scratch: the
    target's scratch job at the same budget)."""


def _run_config(spec: CompareSpec, tasks: list[str], seed: int, datasets: dict[str, str], episodes: int,
                **train) -> dict:
    cfg = copy.deepcopy(spec.run)
    cfg["tasks"] = list(tasks)
    cfg["seed"] = seed
    experts = cfg.setdefault("experts", {})
    experts["episodes"] = episodes
    experts["sources"] = {t: f"dataset:{datasets[t]}" for t in tasks}
    cfg.setdefault("train", {}).update(train)
    return cfg


def make_plan(spec: CompareSpec, out: Path) -> Plan:
    """Every job, in an order where each job comes after the jobs it needs; main comparison
    first for every seed, then the transfer matrix."""
    out = Path(out).resolve()
    jobs: list[Job] = []
    arms: list[Arm] = []
    cells: list[dict] = []
    T = spec.target
    matrix_tasks = all_tasks(spec) if spec.matrix_flops else []
    base = config_mod.from_dict({**spec.run, "tasks": all_tasks(spec)})

    def source_model(seed: int, t: str) -> str:
        """The single-task model of `t` (one job per task and seed, shared by arms and matrix cells)."""
        name = f"seed{seed}/source/{safe(t)}"
        if not any(j.name == name for j in jobs):
            paths = {t: str(out / f"seed{seed}/data/{safe(t)}")}
            jobs.append(Job(name, "run", [f"seed{seed}/data/{safe(t)}"], seed=seed, config=_run_config(
                spec, [t], seed, paths, spec.expert_episodes, max_learner_flops=spec.source_flops)))
        return name

    for seed in spec.seeds:
        p = f"seed{seed}"
        data = {t: f"{p}/data/{safe(t)}" for t in all_tasks(spec)}
        paths = {t: str(out / d) for t, d in data.items()}
        for t in all_tasks(spec):
            need = []
            if t in spec.sources or t in matrix_tasks:  # a source model is trained on it
                need.append(spec.expert_episodes)
            if t == T or t in matrix_tasks:
                need.append(spec.target_episodes)
            kind = base.experts.sources.get(t, base.experts.source)
            jobs.append(Job(data[t], "data", task=t, episodes=max(need), seed=seed, config={"kind": kind}))

        def pretrain(arm: str, tasks: list[str]) -> str:
            name = f"{p}/pretrain/{arm}"
            jobs.append(Job(name, "run", [data[t] for t in tasks], seed=seed, config=_run_config(
                spec, tasks, seed, paths, spec.expert_episodes, max_learner_flops=spec.pretrain_flops)))
            return name

        def on_target(name: str, deps: list[str], init: str = "", budget: float = 0.0, charge=(), task_map=None,
                      **kw) -> Job:
            episodes = kw.pop("episodes", spec.target_episodes)
            cfg = _run_config(spec, [T], seed, paths, episodes, **kw)
            if init:
                cfg["init_from"] = init
            if task_map:
                cfg["init_task_map"] = task_map
            job = Job(f"{p}/{name}", "run", [data[T], *deps], seed=seed, config=cfg, charge=list(charge), budget=budget)
            jobs.append(job)
            return job

        target_data = {T: spec.target_episodes}
        on_target("arm/scratch", [], budget=spec.budget_flops)
        arms.append(Arm("scratch", seed, f"{p}/arm/scratch", [], dict(target_data)))

        # specialist: the closest source's single-task model, fine-tuned
        if spec.closest.measure == "list":
            closest = spec.closest.order[0]
            src = source_model(seed, closest)
            on_target("arm/specialist", [src], init=src, budget=spec.budget_flops, charge=[src],
                      task_map=source_task_map(closest, T))
            arms.append(Arm("specialist", seed, f"{p}/arm/specialist", [src],
                            {**target_data, closest: spec.expert_episodes}))
        else:
            candidates, fell_back = same_spaces(T, spec.sources, spec.closest.order)
            if fell_back:
                src = source_model(seed, candidates[0])
                on_target("arm/specialist", [src], init=src, budget=spec.budget_flops, charge=[src],
                          task_map=source_task_map(candidates[0], T))
                arms.append(Arm("specialist", seed, f"{p}/arm/specialist", [src],
                                {**target_data, candidates[0]: spec.expert_episodes}))
            else:
                models = [source_model(seed, s) for s in candidates]
                evals = []
                for s, m in zip(candidates, models):
                    # The source model run on T as it is: T's observations go through S's adapter.
                    on_target(f"select/{safe(s)}", [m], init=m, task_map={s: T}, pretrain_updates=0, online_updates=0)
                    evals.append(f"{p}/select/{safe(s)}")
                sel = f"{p}/select/closest"
                jobs.append(Job(sel, "select", evals, task=T, seed=seed, config={"candidates": candidates}))
                # Choosing needed every candidate's model and its evaluation: all are charged.
                job = on_target("arm/specialist", [sel, *models], budget=spec.budget_flops, charge=[*models, *evals])
                job.init_from_select = sel
                arms.append(Arm("specialist", seed, f"{p}/arm/specialist", [*models, *evals],
                                {**target_data, **{s: spec.expert_episodes for s in candidates}}))

        for arm, tasks in (("related", spec.related), ("generalist", spec.sources)):
            pre = pretrain(arm, tasks)
            on_target(f"arm/{arm}", [pre], init=pre, budget=spec.budget_flops, charge=[pre])
            used = {**target_data, **{t: spec.expert_episodes for t in tasks}}
            arms.append(Arm(arm, seed, f"{p}/arm/{arm}", [pre], used))
        pre = f"{p}/pretrain/generalist"
        gen_data = {t: spec.expert_episodes for t in spec.sources}
        on_target("arm/generalist-zeroshot", [pre], init=pre, pretrain_updates=0, online_updates=0)
        arms.append(Arm("generalist-zeroshot", seed, f"{p}/arm/generalist-zeroshot", [pre],
                        {**target_data, **gen_data}))
        on_target("arm/generalist-fewshot", [pre], init=pre, episodes=spec.few_shot.episodes,
                  pretrain_updates=spec.few_shot.updates, online_updates=0, freeze_trunk=True)
        arms.append(Arm("generalist-fewshot", seed, f"{p}/arm/generalist-fewshot", [pre],
                        {T: spec.few_shot.episodes, **gen_data}))

    for seed in spec.seeds:
        p = f"seed{seed}"
        paths = {t: str(out / f"{p}/data/{safe(t)}") for t in all_tasks(spec)}
        for tgt in matrix_tasks:
            scratch = f"{p}/matrix/scratch/{safe(tgt)}"
            cfg = _run_config(spec, [tgt], seed, paths, spec.target_episodes, max_learner_flops=spec.matrix_flops)
            jobs.append(Job(scratch, "run", [f"{p}/data/{safe(tgt)}"], seed=seed, config=cfg))
        for src in matrix_tasks:
            model = source_model(seed, src)
            for tgt in matrix_tasks:
                if tgt == src:
                    continue
                name = f"{p}/matrix/{safe(src)}--{safe(tgt)}"
                cfg = _run_config(spec, [tgt], seed, paths, spec.target_episodes)
                cfg["init_from"] = model
                if source_task_map(src, tgt):
                    cfg["init_task_map"] = source_task_map(src, tgt)
                jobs.append(Job(name, "run", [f"{p}/data/{safe(tgt)}", model], seed=seed, config=cfg,
                                charge=[model], budget=spec.matrix_flops))
                cells.append({"seed": seed, "source": src, "target": tgt, "job": name,
                              "scratch": f"{p}/matrix/scratch/{safe(tgt)}"})
    return Plan(jobs, arms, cells)


# -- running jobs --------------------------------------------------------------------------


def job_done(out: Path, job: Job) -> bool:
    d = Path(out) / job.name
    if job.kind == "data":
        return (d / "dataset.json").is_file()
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
    from envs.datasets import DatasetWriter, ProductionTimer
    from envs.registry import make_expert
    from envs.registry import get_task
    from envs.seeding import stream_seed

    source = make_expert(get_task(job.task), job.config["kind"])
    with DatasetWriter(d, job.task, source.kind) as writer:
        first = stream_seed("compare-data", job.seed, job.task)
        episodes = ProductionTimer(source.episodes(job.episodes, first))
        for ep in episodes:
            writer.add(ep)
        writer.finish({"env_steps": int(source.env_steps), "cpu_s": episodes.cpu_s, "gpu_s": 0.0},
                      {"seed": first})


def _train(out: Path, d: Path, job: Job) -> None:
    from distributed.driver import SerialRunner

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
        summary = SerialRunner(run_cfg, d, resume=resume, live=False).run()
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
