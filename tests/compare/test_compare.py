"""`frontier compare`: spec checks, closest-source selection, budget and cost accounting,
init_from / freeze_trunk, resuming, the Ray executor and the report."""
import copy
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import yaml

from frontier.agents.model import DecisionTransformer
from frontier.agents.surgery import freeze_trunk
from frontier.cli import main
from frontier.compare.jobs import execute, job_done, job_options, run_job
from frontier.compare.plan import Arm, Job, Plan, make_plan
from frontier.compare.report import aggregate_curve, arm_offset, arm_record, expert_cost, write_report
from frontier.compare.spec import load_spec, same_spaces, select_closest, spec_from_dict
from frontier.compare.stats import compute_to_reach
from frontier.distributed import config as config_mod
from frontier.distributed.learner_service import init_weights_from
from frontier.distributed.local_executor import LocalExecutor
from frontier.distributed.trainer import Trainer
from frontier.envs.datasets import load_dataset, read_dataset_info
from frontier.envs.experts.rl import zoo_policy
from frontier.envs.registry import get_task

# A comparison that finishes in seconds: Pendulum as target, two sources, a one-layer model.
# One update costs about 1.3e6 FLOPs here, so the budgets are tens to a few hundred updates.
TINY = {
    "name": "tiny",
    "target": "Pendulum-v1",
    "sources": ["InvertedPendulum-v5", "CartPole-v1"],
    "related": ["InvertedPendulum-v5"],
    "closest": {"measure": "list", "order": ["InvertedPendulum-v5"]},
    "seeds": [0],
    "budget_flops": 1.2e8,
    "source_flops": 4.0e7,
    "pretrain_flops": 6.0e7,
    "matrix_flops": 8.0e7,
    "expert_episodes": 2,
    "target_episodes": 1,
    "few_shot": {"episodes": 1, "updates": 5},
    "run": {
        "experts": {"source": "scripted"},
        "model": {"embed_dim": 32, "n_layers": 1, "n_heads": 2, "context_len": 8, "dropout": 0.0},
        "learner": {"warmup_updates": 10},
        "replay": {"capacity": 20000},
        "train": {"batch_size": 16, "pretrain_updates": 30, "online_updates": 1000, "updates_per_round": 20,
                  "explore_steps_per_round": 200, "eval_every": 20, "eval_episodes": 1, "final_eval_episodes": 1},
        "rollout": {"envs_per_worker": 2},
        "checkpoint_every": 20,
    },
}


def tiny(**changes) -> dict:
    d = copy.deepcopy(TINY)
    d.update(changes)
    return d


def closure(plan: Plan, name: str) -> Plan:
    """The plan cut down to one job and the jobs it needs."""
    by_name = {j.name: j for j in plan.jobs}
    keep, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n not in keep:
            keep.add(n)
            todo += by_name[n].deps
    return Plan([j for j in plan.jobs if j.name in keep], [], [])


def one_update_flops(spec, tasks) -> float:
    """Upper bound of one update's learner FLOPs (every token real, the dearest task)."""
    cfg = config_mod.from_dict({**spec.run, "tasks": tasks})
    model = DecisionTransformer(cfg.model, [get_task(t).info() for t in tasks])
    return 3.0 * model.flops_per_token() * cfg.train.batch_size * cfg.model.context_len


@pytest.fixture(scope="module")
def done_compare(tmp_path_factory):
    """The TINY comparison, run serially once for the module: (spec, plan, out)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("compare")
    spec = spec_from_dict(tiny())
    plan = make_plan(spec, out)
    assert execute(plan, out, serial=True, log=lambda m: None) == {}
    return spec, plan, out


# -- the spec ------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"bogus": 1}, "unknown config key 'bogus'"),
    ({"target": "Nope-v0"}, "config key 'target'"),
    ({"sources": ["Pendulum-v1", "CartPole-v1"]}, "cannot be a source"),
    ({"related": ["Acrobot-v1"]}, "'related': 'Acrobot-v1' is not in 'sources'"),
    ({"source_flops": 2e8}, "must be below budget_flops"),
    ({"matrix_flops": 1e7}, "must exceed source_flops"),
    ({"budget_flops": "lots"}, "config key 'budget_flops' must be a number"),
    ({"closest": {"measure": "list"}}, "closest.order"),
    ({"closest": {"measure": "nearest"}}, "closest.measure"),
    ({"closest": {"measure": "spaces"}}, "no source shares Pendulum-v1's spaces"),
    ({"few_shot": {"episodes": 5}}, "few_shot.episodes"),
    ({"target": "Meta-World/window-close-v3", "sources": ["Meta-World/reach-v3", "Meta-World/push-v3"],
      "related": ["Meta-World/reach-v3"], "closest": {"measure": "spaces"}, "source_flops": 7e7},
     "every candidate's model: 2 x source_flops"),
    ({"run": {"tasks": ["CartPole-v1"]}}, "run.tasks"),
    ({"run": {"train": {"batch_size": 0}}}, "train.batch_size"),
    ({"run": {"experts": {"source": "rl"}}}, "has no expert of kind 'rl'"),
])
def test_bad_specs_name_the_problem(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        spec_from_dict(tiny(**changes))


def test_flops_written_without_exponent_sign_are_numbers():
    assert spec_from_dict(tiny(budget_flops="2.0e8")).budget_flops == 2e8  # YAML 1.1 reads 2.0e8 as a string


def test_cli_bad_spec_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny(source_flops=5e8)))
    assert main(["compare", str(path), "--serial", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("frontier compare: error: config key 'source_flops'") and "\n" not in err
    assert not (tmp_path / "out").exists()


# -- closest-task selection -------------------------------------------------------------------


def test_same_spaces_measure_finds_matching_sources_or_falls_back():
    assert same_spaces("Walker2d-v5", ["Hopper-v5", "HalfCheetah-v5", "CartPole-v1"]) == (["HalfCheetah-v5"], False)
    assert same_spaces("InvertedDoublePendulum-v5", ["InvertedPendulum-v5"], ["InvertedPendulum-v5"]) == (
        ["InvertedPendulum-v5"], True)
    with pytest.raises(ValueError, match="no source shares InvertedDoublePendulum-v5's spaces"):
        same_spaces("InvertedDoublePendulum-v5", ["InvertedPendulum-v5", "CartPole-v1"])


def test_select_closest_takes_the_highest_zero_shot_return():
    assert select_closest({"a": 1.0, "b": 3.0, "c": 2.0}) == "b"
    assert select_closest({"a": 3.0, "b": 3.0}) == "a"  # ties: the earlier candidate
    with pytest.raises(ValueError):
        select_closest({})


def test_user_list_measure_fine_tunes_the_first_listed_source(tmp_path):
    spec = spec_from_dict(tiny(closest={"measure": "list", "order": ["CartPole-v1", "InvertedPendulum-v5"]}))
    jobs = {j.name: j for j in make_plan(spec, tmp_path).jobs}
    job = jobs["seed0/arm/specialist"]
    assert job.config["init_from"] == "seed0/source/CartPole-v1" and job.charge == ["seed0/source/CartPole-v1"]
    assert "init_task_map" not in job.config  # CartPole's spaces differ from Pendulum's: the trunk only


def test_spaces_measure_falls_back_to_the_list_when_no_source_matches(tmp_path):
    spec = spec_from_dict(tiny(closest={"measure": "spaces", "order": ["CartPole-v1"]}))
    jobs = {j.name: j for j in make_plan(spec, tmp_path).jobs}
    assert jobs["seed0/arm/specialist"].config["init_from"] == "seed0/source/CartPole-v1"
    assert not any("/select/" in n for n in jobs)


def test_spaces_measure_evaluates_candidates_zero_shot_and_fine_tunes_the_best(tmp_path):
    torch.set_num_threads(1)
    spec = spec_from_dict(tiny(
        target="Walker2d-v5", sources=["HalfCheetah-v5", "Hopper-v5"], related=["Hopper-v5"], matrix_flops=0,
        closest={"measure": "spaces"}, expert_episodes=1,
        run={**TINY["run"], "experts": {"source": "filtered"}}))
    plan = make_plan(spec, tmp_path)
    spec_job = next(j for j in plan.jobs if j.name == "seed0/arm/specialist")
    # Choosing needed the candidate's model and its zero-shot evaluation: both are charged.
    assert spec_job.charge == ["seed0/source/HalfCheetah-v5", "seed0/select/HalfCheetah-v5"]
    assert execute(closure(plan, "seed0/arm/specialist"), tmp_path, serial=True, log=lambda m: None) == {}
    chosen = json.loads((tmp_path / "seed0/select/closest/select.json").read_text())
    assert chosen["closest"] == "HalfCheetah-v5" and set(chosen["zero_shot_return"]) == {"HalfCheetah-v5"}
    cfg = config_mod.load(tmp_path / "seed0/arm/specialist/config.yaml")
    # Same spaces: the whole HalfCheetah policy (adapter and head too) starts the Walker2d run.
    assert cfg.init_from.endswith("seed0/source/HalfCheetah-v5") and cfg.init_task_map == {"HalfCheetah-v5": "Walker2d-v5"}
    zero_shot = json.loads((tmp_path / "seed0/select/HalfCheetah-v5/summary.json").read_text())
    assert zero_shot["learner_updates"] == 0


# -- budget and cost accounting ---------------------------------------------------------------


def test_every_arm_stops_at_its_budget(done_compare):
    spec, plan, out = done_compare
    step = one_update_flops(spec, spec.sources)
    for arm in plan.arms:
        if arm.name in ("scratch", "specialist", "related", "generalist"):
            rec = arm_record(out, arm, spec.target, (0.0, 1.0))
            total = rec["cost"]["learner_flops"]
            assert spec.budget_flops <= total < spec.budget_flops + step, arm.name
            summary = json.loads((out / arm.final / "summary.json").read_text())
            planned = spec.run["train"]["pretrain_updates"] + spec.run["train"]["online_updates"]
            assert summary["learner_updates"] < planned  # the budget stopped it, not the update count


def test_pretraining_is_charged_against_the_arm_budget(done_compare):
    spec, plan, out = done_compare
    source = json.loads((out / "seed0/source/InvertedPendulum-v5/summary.json").read_text())
    assert spec.source_flops <= source["compute"]["learner_flops"] < spec.source_flops + one_update_flops(
        spec, ["InvertedPendulum-v5"])
    cfg = config_mod.load(out / "seed0/arm/specialist/config.yaml")
    assert cfg.train.max_learner_flops == pytest.approx(spec.budget_flops - source["compute"]["learner_flops"])
    pre = json.loads((out / "seed0/pretrain/generalist/summary.json").read_text())
    gen = next(a for a in plan.arms if a.name == "generalist")
    assert arm_record(out, gen, spec.target, (0.0, 1.0))["pretraining_flops"] == pre["compute"]["learner_flops"]
    # The generalist's curve starts after its pretraining: x = pretraining FLOPs + fine-tuning FLOPs.
    curve = arm_record(out, gen, spec.target, (0.0, 1.0))["curve"]
    assert curve[0]["flops"] > pre["compute"]["learner_flops"]


def test_expert_data_is_charged_pro_rata_once_per_arm(done_compare):
    spec, plan, out = done_compare
    gen = next(a for a in plan.arms if a.name == "generalist")
    assert gen.data == {"Pendulum-v1": 1, "InvertedPendulum-v5": 2, "CartPole-v1": 2}
    off = arm_offset(out, gen)
    expected_cpu, expected_steps = 0.0, 0
    for task, used in gen.data.items():
        info = read_dataset_info(out / f"seed0/data/{task}")
        expected_cpu += used / info["episodes"] * info["cost"]["cpu_s"]
        expected_steps += round(used / info["episodes"] * info["cost"]["env_steps"])
    assert off["data_cpu_s"] == pytest.approx(expected_cpu) and off["data_cpu_s"] > 0
    assert off["env_steps_by_source"]["data:scripted"] == expected_steps > 0
    assert off["expert_cpu_s"] == 0.0  # scripted controllers need no training


def test_rl_experts_are_charged_their_zoo_card_cost(tmp_path):
    card = zoo_policy("InvertedPendulum-v5", "expert")
    assert card is not None, "the zoo holds an InvertedPendulum-v5 expert"
    job = Job("seed0/data/InvertedPendulum-v5", "data", task="InvertedPendulum-v5", episodes=2, config={"kind": "rl"})
    info = run_job(tmp_path, job)
    assert info["source"]["kind"] == "rl" and expert_cost(info)["cpu_s"] == card["cpu_s"] > 0
    off = arm_offset(tmp_path, Arm("specialist", 0, "", [], {"InvertedPendulum-v5": 1}))
    assert off["expert_cpu_s"] == card["cpu_s"]
    assert off["env_steps_by_source"]["expert-training"] == card["env_steps"]
    assert off["env_steps_by_source"]["data:rl"] == round(info["cost"]["env_steps"] / 2)  # 1 of its 2 episodes


# -- init_from and freeze_trunk -----------------------------------------------------------------


def _saved_run(directory, tasks, seed=0):
    cfg = config_mod.from_dict({"tasks": tasks, "model": {"embed_dim": 16, "n_layers": 1, "n_heads": 2}})
    torch.manual_seed(seed)
    model = DecisionTransformer(cfg.model, [get_task(t).info() for t in tasks])
    directory.mkdir(parents=True)
    config_mod.save(cfg, directory / "config.yaml")
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                str(directory / "model.safetensors"))
    return cfg, model


def test_init_from_matches_per_task_modules_by_name(tmp_path):
    cfg, src = _saved_run(tmp_path / "src", ["CartPole-v1", "Pendulum-v1"])
    torch.manual_seed(1)
    dst = DecisionTransformer(cfg.model, [get_task(t).info() for t in ["Pendulum-v1", "InvertedPendulum-v5"]])
    fresh = copy.deepcopy(dst.state_dict())
    report = init_weights_from(dst, tmp_path / "src")
    torch.testing.assert_close(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)  # the trunk
    torch.testing.assert_close(dst.heads["0"].weight, src.heads["1"].weight)  # Pendulum: position 1 -> 0
    torch.testing.assert_close(dst.task_embed.weight[0], src.task_embed.weight[1])
    torch.testing.assert_close(dst.log_temperature[0], src.log_temperature[1])
    torch.testing.assert_close(dst.heads["1"].weight, fresh["heads.1.weight"])  # InvertedPendulum: not in the source
    torch.testing.assert_close(dst.task_embed.weight[1], fresh["task_embed.weight"][1])
    assert "heads.0.weight" in report["skipped"]  # CartPole's head has no place here


def test_init_task_map_carries_a_policy_to_a_task_with_the_same_spaces(tmp_path):
    _, src = _saved_run(tmp_path / "src", ["HalfCheetah-v5"])
    cfg = config_mod.from_dict({"tasks": ["Walker2d-v5"], "model": {"embed_dim": 16, "n_layers": 1, "n_heads": 2}})
    dst = DecisionTransformer(cfg.model, [get_task("Walker2d-v5").info()])
    init_weights_from(dst, tmp_path / "src", {"HalfCheetah-v5": "Walker2d-v5"})
    torch.testing.assert_close(dst.heads["0"].weight, src.heads["0"].weight)
    torch.testing.assert_close(dst.obs_encoders["0"].proj.weight, src.obs_encoders["0"].proj.weight)
    with pytest.raises(ValueError, match="did not train on"):
        init_weights_from(dst, tmp_path / "src", {"Hopper-v5": "Walker2d-v5"})
    with pytest.raises(ValueError, match="not a finished run directory"):
        init_weights_from(dst, tmp_path / "nowhere")


def test_freeze_trunk_trains_only_per_task_modules(tmp_path, tiny_config):
    cfg = tiny_config("train.pretrain_updates=5", "train.online_updates=0", "train.freeze_trunk=true")
    (tmp_path / "run").mkdir()
    runner = Trainer(cfg, tmp_path / "run", LocalExecutor(), live=False)
    model = runner.learner.target.learner.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runner.run()
    after = model.state_dict()
    assert torch.equal(before["blocks.0.attn.qkv.weight"], after["blocks.0.attn.qkv.weight"])
    assert torch.equal(before["rtg_embed.weight"], after["rtg_embed.weight"])  # shared embeddings are trunk
    assert not torch.equal(before["heads.0.weight"], after["heads.0.weight"])
    assert not torch.equal(before["obs_encoders.1.proj.weight"], after["obs_encoders.1.proj.weight"])
    assert freeze_trunk(model) < model.num_parameters()


# -- resuming, Ray, the report ----------------------------------------------------------------


def test_interrupted_compare_resumes_unfinished_runs_only(done_compare, tmp_path):
    spec, _, done_out = done_compare
    out = tmp_path / "out"
    shutil.copytree(done_out, out)
    plan = make_plan(spec, out)
    run = out / "seed0/arm/scratch"
    summary = json.loads((run / "summary.json").read_text())
    summary["status"] = "running"  # as if the process died after its last checkpoint
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "model.safetensors").unlink()

    partial = write_report(spec, plan, out)
    assert partial["status"] == "partial" and (out / "report.md").read_text().startswith("# frontier compare: tiny\n\n**PARTIAL")
    assert "scratch" not in partial["aggregate"]

    lines = []
    assert execute(plan, out, serial=True, log=lines.append) == {}
    assert lines[0].endswith(f"{len(plan.jobs) - 1} finished before, 1 to run") and "seed0/arm/scratch" in lines[1]
    assert "resumed" in (run / "log.txt").read_text()
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["status"] == "finished" and resumed["learner_updates"] >= summary["learner_updates"]


def test_report_files_and_numbers(done_compare):
    spec, plan, out = done_compare
    results = write_report(spec, plan, out)
    assert results["status"] == "complete"
    for name in ("report.md", "results.json", "score_vs_flops.png", "score_vs_seconds.png", "transfer_matrix.png"):
        assert (out / name).is_file(), name
    assert set(results["aggregate"]) == {"scratch", "specialist", "related", "generalist"}
    assert set(results["points"]) == {"generalist-zeroshot", "generalist-fewshot"}
    # every ordered pair of the three tasks
    assert len(results["transfer_matrix"]) == 6
    scratch = json.loads((out / "seed0/arm/scratch/summary.json").read_text())
    assert results["aggregate"]["scratch"]["final_scores"] == [scratch["tasks"]["Pendulum-v1"]["normalized_score"]]
    for a in results["aggregate"].values():  # the peak is the best point of the arm's IQM curve
        assert a["peak_iqm"] == max(a["flops"]["iqm"]) and a["peak_flops"] in a["flops"]["x"]
        assert a["final_to_peak"] is None or a["final_to_peak"] == pytest.approx(a["final_iqm"] / a["peak_iqm"])
    assert "final/peak" in (out / "report.md").read_text()
    for run in ("seed0/arm/generalist", "seed0/matrix/CartPole-v1--Pendulum-v1"):
        assert any((out / run / "tb").iterdir())  # TensorBoard for every run


def test_training_jobs_ask_ray_for_a_gpu_when_the_cluster_has_one():
    spec = spec_from_dict(tiny(matrix_flops=0))
    plan = make_plan(spec, Path("unused"))
    run = next(j for j in plan.jobs if j.kind == "run")
    data = next(j for j in plan.jobs if j.kind == "data")
    assert job_options(run, cluster_gpus=1) == {"num_cpus": 1, "num_gpus": 1}  # device "auto"
    assert job_options(run, cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 0}
    assert job_options(data, cluster_gpus=4)["num_gpus"] == 0
    on_cpu = dataclasses.replace(run, config={**run.config, "learner": {"device": "cpu"}})
    assert job_options(on_cpu, cluster_gpus=4)["num_gpus"] == 0


def test_ray_executor_schedules_gpu_jobs_on_a_cluster_with_a_gpu(tmp_path):
    """A local Ray with one (fake) GPU: the runs ask for it, one at a time, and all finish."""
    import ray

    spec = spec_from_dict(tiny(matrix_flops=0))
    plan = closure(make_plan(spec, tmp_path), "seed0/arm/specialist")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
    try:
        assert ray.cluster_resources().get("GPU") == 1
        assert execute(plan, tmp_path, serial=False, log=lambda m: None) == {}
    finally:
        ray.shutdown()
    assert all(job_done(tmp_path, j) for j in plan.jobs)


def test_ray_executor_runs_jobs_as_tasks(tmp_path):
    import ray

    spec = spec_from_dict(tiny(matrix_flops=0))
    plan = closure(make_plan(spec, tmp_path), "seed0/arm/specialist")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert execute(plan, tmp_path, serial=False, log=lambda m: None) == {}
    finally:
        ray.shutdown()
    assert all(job_done(tmp_path, j) for j in plan.jobs)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs" / "compare").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_committed_compare_specs_load_and_plan(path, tmp_path):
    spec = load_spec(path)
    plan = make_plan(spec, tmp_path)
    assert {a.name for a in plan.arms} >= {"scratch", "specialist", "related", "generalist"}


def test_findings_call_differences_below_the_printed_precision_ties():
    from frontier.compare.report import _findings

    def arm(iqm):
        return {"final_iqm": iqm, "final_ci": [iqm, iqm], "final_to_peak": None, "flops": {"x": [], "iqm": []},
                "seconds": {"x": [], "iqm": []}}

    agg = {"scratch": arm(1.0), "specialist": arm(1.0), "generalist": arm(0.9999)}
    lines = _findings(None, agg, {}, {}, {"flops": [], "seconds": []})
    assert any("The generalist ties the specialist" in line for line in lines), lines
    assert not any("Where the generalist loses" in line for line in lines), lines
    agg["specialist"] = arm(0.9)
    lines = _findings(None, agg, {}, {}, {"flops": [], "seconds": []})
    assert any("The generalist beats the specialist" in line for line in lines), lines


def test_report_measures_compute_to_reach_success_rates_for_targets_with_success(done_compare, tmp_path, monkeypatch):
    """A target that defines success: each run's success rates (evals.jsonl, summary.json) give
    every arm a success curve, its final rates, and compute to reach each success level."""
    from frontier.envs import registry

    spec, plan, done = done_compare
    out = tmp_path / "copy"
    shutil.copytree(done, out)
    T = spec.target
    monkeypatch.setitem(registry.all_tasks(), T, dataclasses.replace(registry.get_task(T), success_key="success"))
    # Success rate 0 until the arm's second evaluation (its first if it has one), 1 from then on.
    first_success = {}
    for arm in plan.arms:
        path = out / arm.final / "evals.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        updates = sorted({e["updates"] for e in lines})
        first_success[arm.name] = updates[min(1, len(updates) - 1)]
        for e in lines:
            e["successes"] = {T: [e["updates"] >= first_success[arm.name]]}
        path.write_text("".join(json.dumps(e) + "\n" for e in lines))
        summary = json.loads((out / arm.final / "summary.json").read_text())
        summary["tasks"][T]["success_rate"] = 1.0
        (out / arm.final / "summary.json").write_text(json.dumps(summary))
    results = write_report(spec, plan, out)
    reach = results["compute_to_reach_success"]
    assert set(reach) == {str(lv) for lv in spec.levels if lv <= 1}
    for arm, a in results["aggregate"].items():
        assert a["success"]["final_rates"] == [1.0] and a["success"]["final_iqm"] == 1.0
        (point,) = [p for p in results["records"][arm][0]["curve"] if p["updates"] == first_success[arm]]
        assert point["success"] == 1.0
        assert all(reach[lv][arm]["flops"] == pytest.approx(point["flops"]) for lv in reach)
    assert reach["0.5"]["specialist"]["flops_ratio_to_specialist"] == 1.0
    assert (out / "success_vs_flops.png").is_file()
    assert "## Success rate" in (out / "report.md").read_text()
    # Without success on the target (the unpatched run): no success section.
    monkeypatch.undo()
    assert write_report(spec, plan, out)["compute_to_reach_success"] == {}


def test_an_arm_whose_seeds_do_not_overlap_in_seconds_still_has_a_curve():
    def rec(points):
        return {"curve": [{"seconds": s, "flops": 0.0, "score": v, "success": None} for s, v in points]}

    # Seed 0 starts after seed 1 has finished (its pretraining took longer): seed 1's final score holds.
    curve = aggregate_curve([rec([(218, 0.7), (260, 0.9)]), rec([(176, 0.8), (205, 0.75)])], "seconds")
    assert curve["x"] == [218, 260]
    assert np.allclose(curve["iqm"], [0.725, 0.825])
    assert compute_to_reach(curve["x"], curve["iqm"], 0.8) == 260


def test_a_dataset_shorter_than_the_plan_asks_is_collected_again_with_its_episodes_first(tmp_path):
    # A spec that grows (a transfer matrix added: the target becomes a source and needs more
    # demonstrations) must not reuse the shorter dataset: its source model failed with
    # "holds 5 episodes, 10 were asked for".
    short = Job("seed0/data/CartPole-v1", "data", task="CartPole-v1", episodes=2, seed=0, config={"kind": "filtered"})
    run_job(tmp_path, short)
    _, before = load_dataset(tmp_path / short.name)
    longer = dataclasses.replace(short, episodes=4)
    assert not job_done(tmp_path, longer)
    info = run_job(tmp_path, longer)
    _, after = load_dataset(tmp_path / short.name)
    assert info["episodes"] == 4 and job_done(tmp_path, longer)
    assert [e.source for e in after[:2]] == [e.source for e in before]
    assert all(np.array_equal(a.actions, b.actions) for a, b in zip(after, before))
    assert sorted(p.name for p in tmp_path.joinpath("seed0/data").iterdir()) == ["CartPole-v1"]  # nothing left over
