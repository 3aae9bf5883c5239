"""The plan of a comparison: every job (datasets, runs, selections) and every arm it measures."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from frontier.compare.spec import CompareSpec, all_tasks, safe, same_spaces, source_task_map
from frontier.distributed import config as config_mod


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
