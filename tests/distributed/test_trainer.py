"""One training loop over two executors: the same config keeps the same schedule in process and on
Ray actors, and every run option (init_from, freeze_trunk, the FLOPs budget) works on both."""
import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from frontier.distributed.local_executor import LocalExecutor
from frontier.distributed.ray_executor import RayExecutor
from frontier.distributed.trainer import Trainer


pytestmark = pytest.mark.usefixtures("frontier_ray")  # one Ray instance for the module


def schedule(run_dir) -> dict:
    """What the schedule decided, read from a run directory."""
    evals = [json.loads(line) for line in (run_dir / "evals.jsonl").read_text().splitlines()]
    tb = EventAccumulator(str(run_dir / "tb")).Reload()
    return {
        "evaluations": [(e["updates"], {t: len(r) for t, r in e["returns"].items()}) for e in evals],
        "checkpoints": sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*")),
        "updates": json.loads((run_dir / "summary.json").read_text())["learner_updates"],
        "learner_tags": sorted(t for t in tb.Tags()["scalars"] if t.startswith("learner/")),
    }


def test_serial_and_ray_keep_one_schedule(tiny_config, tmp_path):
    # 120 planned updates, a multiple of eval_every: the final evaluation is the one at 120
    # (the serial loop used to evaluate twice there).
    cfg = tiny_config("train.eval_every=40", "checkpoint_every=40")
    for d in ("serial", "ray"):
        (tmp_path / d).mkdir()
    Trainer(cfg, tmp_path / "serial", LocalExecutor(), live=False).run()
    Trainer(cfg, tmp_path / "ray", RayExecutor(), live=False).run()
    serial, on_ray = schedule(tmp_path / "serial"), schedule(tmp_path / "ray")
    assert serial == on_ray
    assert [u for u, _ in serial["evaluations"]] == [40, 80, 120]
    assert serial["evaluations"][-1][1] == {t: cfg.train.final_eval_episodes for t in cfg.tasks}
    assert serial["checkpoints"] == ["ckpt-00000040", "ckpt-00000080", "ckpt-00000120"]
    assert {"learner/utilization", "learner/batch_wait_s", "learner/grad_norm"} <= set(serial["learner_tags"])


def test_init_from_freeze_trunk_and_the_flops_budget_work_on_ray(tiny_config, tmp_path):
    source, run_dir = tmp_path / "source", tmp_path / "ray"
    source.mkdir(), run_dir.mkdir()
    Trainer(tiny_config("train.online_updates=0"), source, LocalExecutor(), live=False).run()
    budget = 2e6
    cfg = tiny_config(f"init_from={source}", "train.freeze_trunk=true", f"train.max_learner_flops={budget}")
    runner = Trainer(cfg, run_dir, RayExecutor(), live=False)
    summary = runner.run()
    assert summary["status"] == "finished"
    # The budget stops training between two updates: the last one crossed it.
    assert summary["compute"]["learner_flops"] >= budget
    assert 0 < summary["learner_updates"] < cfg.train.pretrain_updates + cfg.train.online_updates
    per_update = summary["compute"]["learner_flops"] / summary["learner_updates"]
    assert summary["compute"]["learner_flops"] - budget < 2 * per_update
    from safetensors.torch import load_file

    before, after = load_file(str(source / "model.safetensors")), load_file(str(run_dir / "model.safetensors"))
    # The trunk came from the source run and stayed frozen; the per-task heads trained on.
    assert torch.equal(before["blocks.0.attn.qkv.weight"], after["blocks.0.attn.qkv.weight"])
    assert not torch.equal(before["heads.0.weight"], after["heads.0.weight"])
