"""End to end without Ray: expert data, offline pretraining, online fine-tuning, a score that learned."""
import copy
import json
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from frontier.distributed import config
from frontier.distributed.local_executor import LocalExecutor
from frontier.distributed.trainer import Trainer
from frontier.distributed.replay import nll_weights, read_shards
from frontier.envs.references import REFERENCE_SEED
from frontier.envs.seeding import RESERVED

TINY = {
    "tasks": ["CartPole-v1"],
    "seed": 0,
    "experts": {"episodes": 6},
    "model": {"embed_dim": 32, "n_layers": 1, "n_heads": 2, "context_len": 10, "dropout": 0.0},
    "learner": {"lr": 0.001, "warmup_updates": 20},
    "train": {"batch_size": 32, "pretrain_updates": 250, "online_updates": 50, "updates_per_round": 25,
              "explore_steps_per_round": 500, "eval_every": 150, "eval_episodes": 2, "final_eval_episodes": 5,
              "val_every": 50},
    "rollout": {"envs_per_worker": 2},
    "checkpoint_every": 100,
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    summary = Trainer(config.from_dict(TINY), run_dir, LocalExecutor(), live=False).run()
    return run_dir, summary


def test_serial_run_learns_cartpole(finished_run):
    run_dir, summary = finished_run
    assert summary["status"] == "finished"
    assert summary["learner_updates"] == 300
    task = summary["tasks"]["CartPole-v1"]
    assert task["eval_episodes"] == 5
    # Random play scores ~22 and the scripted expert 500: imitation must get most of the way.
    assert task["normalized_score"] > 0.6, task
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["tasks"] == summary["tasks"]
    sources = on_disk["compute"]["env_steps_by_source"]
    assert sources["scripted"] > 0 and sources["explore"] >= 1000 and sources["eval"] > 0
    assert on_disk["env_steps"] == sum(sources.values())
    # The held-out expert episodes (one of six) are measured every 50 updates; the fit improves on them.
    val = [json.loads(line) for line in (run_dir / "val.jsonl").read_text().splitlines()]
    assert [v["updates"] for v in val] == [50, 100, 150, 200, 250, 300]
    nll = [v["tasks"]["CartPole-v1"]["nll"] for v in val]
    assert min(nll[1:5]) < 0.8 * nll[0], nll
    assert task["val"] == {**val[-1]["tasks"]["CartPole-v1"], "updates": 300}
    assert on_disk["compute"]["learner_flops"] > 0


def test_run_directory_contents(finished_run):
    run_dir, _ = finished_run
    assert (run_dir / "config.yaml").is_file() and (run_dir / "model.safetensors").is_file()
    # run.log: the progress lines, the last at the end of the run with its final scores.
    last = (run_dir / "run.log").read_text().splitlines()[-1]
    assert "updates 300/300" in last and "CartPole-v1=" in last, last
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "ckpt-00000100", "ckpt-00000200", "ckpt-00000300"]
    kinds = {ep.source["kind"] for _, eps, _ in read_shards(run_dir / "replay") for ep in eps}
    assert kinds == {"scripted", "explore"}
    # Expert data and exploration never play the env seeds kept for the reference measurements.
    seeds = [ep.source["seed"] for _, eps, _ in read_shards(run_dir / "replay") for ep in eps]
    assert min(seeds) >= RESERVED > REFERENCE_SEED + 20
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in ("return/CartPole-v1", "normalized/CartPole-v1", "explore_return/CartPole-v1", "loss/total",
                "replay/CartPole-v1/timesteps", "throughput/env_steps_per_s", "val/CartPole-v1/nll",
                "val/CartPole-v1/action_error"):
        assert tag in tags, tag


def test_resume_continues_updates_and_replay(finished_run, tmp_path):
    # A copy: the later tests read the finished run as it was.
    summary = finished_run[1]
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    episodes_before = sum(len(eps) for _, eps, _ in read_shards(run_dir / "replay"))
    # from_dict sets an override into the sections it is given: a copy, so TINY stays as it is for the next tests.
    more = config.from_dict(copy.deepcopy(TINY), ["train.online_updates=100"])
    runner = Trainer(more, run_dir, LocalExecutor(), resume=True, live=False)
    assert runner.learner.target.learner.updates == 300
    stats = runner.replay.target.stats().values()
    assert sum(s["episodes"] + s["holdout_episodes"] for s in stats) == episodes_before
    assert all(s["holdout_episodes"] >= 1 for s in stats)  # the same ones held out again
    resumed = runner.run()
    assert resumed["learner_updates"] == 350
    assert resumed["env_steps"] > summary["env_steps"]
    assert resumed["compute"]["env_steps_by_source"]["scripted"] == summary["compute"]["env_steps_by_source"]["scripted"]


@pytest.mark.parametrize("damage", ["truncate model", "garbage state"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(finished_run, tmp_path, capsys, damage):

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    *_, previous, newest = sorted((run_dir / "checkpoints").glob("ckpt-*"))
    if damage == "truncate model":
        path = newest / "model.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    else:
        (newest / "learner_state.pt").write_bytes(b"not a checkpoint")
    runner = Trainer(config.from_dict(TINY), run_dir, LocalExecutor(), resume=True, live=False)
    err = capsys.readouterr().err
    assert f"resume: skipping checkpoint {newest.name}:" in err and len(err.strip().splitlines()) == 1
    updates = int(previous.name.split("-")[1])
    assert runner.resume_from == previous and runner.learner.target.learner.updates == runner.state.updates == updates
    runner.monitor.close()


def test_resume_quarantines_a_corrupt_replay_shard_and_counts_it(finished_run, tmp_path, capsys):

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    shard = sorted((run_dir / "replay").glob("shard-*.npz"))[-1]
    shard.write_bytes(b"garbage")
    runner = Trainer(config.from_dict(TINY), run_dir, LocalExecutor(), resume=True, live=False)
    assert runner.state.shards_quarantined == 1 and (run_dir / "replay" / "quarantine" / shard.name).is_file()
    assert f"{shard.name} is unreadable" in capsys.readouterr().err
    summary = runner.write_summary("running")
    runner.monitor.close()
    assert summary["faults"]["replay_shards_quarantined"] == 1
    with pytest.raises(ValueError, match="unreadable"):  # --strict
        shutil.copy(run_dir / "replay" / "quarantine" / shard.name, shard)
        Trainer(config.from_dict(TINY), run_dir, LocalExecutor(), resume=True, live=False, strict=True)


def test_eval_command_scores_the_final_model(finished_run, tmp_path, capsys):
    from frontier.cli import main

    run_dir, _ = finished_run
    out = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--episodes", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["CartPole-v1"]
    assert result["episodes"] == 2 and result["normalized_score"] > 0.6
    assert "return targets of the run's last evaluation: CartPole-v1 500.0" in capsys.readouterr().out


def test_eval_command_takes_a_chosen_checkpoint_or_the_raw_weights(finished_run, tmp_path, capsys):
    from frontier.cli import main

    run_dir, _ = finished_run
    assert main(["eval", str(run_dir), "--episodes", "1", "--checkpoint", "200"]) == 0
    assert f"weights: {run_dir / 'checkpoints' / 'ckpt-00000200' / 'model.safetensors'}" in capsys.readouterr().out
    assert main(["eval", str(run_dir), "--checkpoint", "150"]) == 2
    assert "no checkpoint at 150 updates (checkpoints at: 100, 200, 300)" in capsys.readouterr().err
    assert main(["eval", str(run_dir), "--raw-weights"]) == 2  # no moving average: the policy is raw
    assert "evaluate it without --raw-weights" in capsys.readouterr().err
    averaged = tmp_path / "averaged"
    averaged.mkdir()
    Trainer(config.from_dict(TINY, ["learner.ema_decay=0.9", "train.online_updates=0"]), averaged,
            LocalExecutor(), live=False).run()
    out = tmp_path / "raw.json"
    assert main(["eval", str(averaged), "--episodes", "2", "--raw-weights", "--json", str(out)]) == 0
    assert "learner_state.pt (raw, not the moving average)" in capsys.readouterr().out
    assert json.loads(out.read_text())["CartPole-v1"]["episodes"] == 2


def test_eval_command_sweeps_return_targets(finished_run, tmp_path, capsys):
    # `--target` evaluates once per given return, conditioned on it (whether the model follows
    # its target is the model's business: tests/agents/test_learner.py).
    from frontier.cli import main

    out = tmp_path / "sweep.json"
    assert main(["eval", str(finished_run[0]), "--episodes", "2", "--target", "30", "500", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["CartPole-v1"]
    assert [r["target"] for r in rows] == [30.0, 500.0] and all(r["episodes"] == 2 for r in rows)
    printed = capsys.readouterr().out
    assert "target      30.0" in printed and "target     500.0" in printed
    assert "last evaluation" not in printed


def test_eval_command_conditions_on_the_runs_last_evaluation_targets(finished_run, tmp_path, capsys):
    # Data-relative targets depend on the run's store: `frontier eval` must use the recorded ones.

    from frontier.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    lines = (run_dir / "evals.jsonl").read_text().splitlines()
    assert all(json.loads(line)["targets"] == {"CartPole-v1": 500.0} for line in lines)
    last = json.loads(lines[-1])
    last["targets"] = {"CartPole-v1": 123.0}
    (run_dir / "evals.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0
    assert "CartPole-v1 123.0" in capsys.readouterr().out


def test_sigterm_ends_in_a_checkpoint_and_a_terminated_summary(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import yaml

    cfg = {**TINY, "train": {**TINY["train"], "online_updates": 100_000}}  # would run for hours
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "frontier.cli", "train", str(tmp_path / "c.yaml"), "--serial",
                             "--out", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not list((run_dir / "checkpoints").glob("ckpt-*")) and time.monotonic() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["stop_reason"] == "terminated"
    assert "status failed (terminated)" in out and "Traceback" not in out
    newest = sorted((run_dir / "checkpoints").glob("ckpt-*"))[-1]
    assert int(newest.name.split("-")[1]) == summary["learner_updates"]  # the final checkpoint is the stop's


@pytest.mark.parametrize("overrides", [
    [], ["tasks=[CartPole-v1,Pendulum-v1]"],
    ["tasks=[CartPole-v1,Pendulum-v1]", "replay.task_sampling=val_nll", "replay.task_sampling_temperature=0.1"],
], ids=["fixed", "two", "val_nll"])
def test_a_resumed_serial_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, overrides):
    # Stopped at the checkpoint of 200 updates (pretraining, after the evaluation at 150) and
    # resumed: the same batches (the replay store's sampling stream is checkpointed, and with
    # val_nll the batch shares the held-out NLLs set), the same evaluation episodes (named by
    # the evaluation's number, which is checkpointed too), the same weights, so the same
    # evaluations and the same final scores.
    import torch

    from frontier.distributed.trainer import Trainer

    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # the thread governor's ceiling: one thread
    torch.set_num_threads(1)
    cfg = config.from_dict(TINY, overrides)
    for name in ("whole", "parts"):
        (tmp_path / name).mkdir()
    whole = Trainer(cfg, tmp_path / "whole", LocalExecutor(), live=False).run()

    original = Trainer.checkpoint
    stopped = []

    def stop_once(self):
        path = original(self)
        if self.state.updates == 200 and not stopped:
            stopped.append(path)
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(Trainer, "checkpoint", stop_once)
    first = Trainer(cfg, tmp_path / "parts", LocalExecutor(), live=False).run()
    assert first["stop_reason"] == "interrupted" and first["learner_updates"] == 200
    resumed = Trainer(cfg, tmp_path / "parts", LocalExecutor(), resume=True, live=False).run()
    assert resumed["status"] == "finished" and resumed["learner_updates"] == 300

    def evals(run_dir):
        return [(e["updates"], e["returns"]) for e in map(json.loads, (run_dir / "evals.jsonl").read_text().splitlines())]

    assert evals(tmp_path / "parts") == evals(tmp_path / "whole")
    assert resumed["tasks"] == whole["tasks"]
    if len(overrides) > 1:  # the shares follow the last validation's action errors
        average = {}
        for line in (tmp_path / "whole" / "val.jsonl").read_text().splitlines():
            for t, m in json.loads(line)["tasks"].items():
                average[t] = 0.5 * average.get(t, m["nll"]) + 0.5 * m["nll"]
        expected = nll_weights(average, cfg.tasks, 0.5, 0.1)
        assert {t: whole["tasks"][t]["batch_share"] for t in cfg.tasks} == pytest.approx(expected)
        assert abs(expected["CartPole-v1"] - 0.5) > 0.01


def test_held_out_selection_ends_with_the_policy_of_the_lowest_held_out_nll(tmp_path):
    import safetensors.torch
    import torch

    cfg = config.from_dict(TINY, ["train.select=val"])
    (tmp_path / "run").mkdir()
    runner = Trainer(cfg, tmp_path / "run", LocalExecutor(), live=False)
    summary = runner.run()
    val = [json.loads(line) for line in (tmp_path / "run" / "val.jsonl").read_text().splitlines()]
    mean_nll = {v["updates"]: v["tasks"]["CartPole-v1"]["nll"] for v in val}
    best = min(mean_nll, key=mean_nll.get)
    assert summary["selected"] == {"updates": best, "val_nll": pytest.approx(mean_nll[best])}
    exported = safetensors.torch.load_file(str(tmp_path / "run" / "model.safetensors"))
    last = runner.learner.target.learner.weights()
    assert any(not torch.equal(exported[k], last[k]) for k in last) == (best != 300)
    # A checkpoint carries the kept policy: a service loading it keeps the same one.
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*"))[-1]
    service = runner.learner.target
    before = service.best()
    service.load(str(ckpt))
    assert service.best() == before
    with pytest.raises(ValueError, match="needs held-out data"):
        config.from_dict(TINY, ["train.select=val", "replay.holdout_share=0"])


def test_a_trained_runs_policy_acts_in_a_users_own_loop(finished_run):
    # The module docstring's example, run as written (on this run), then whole episodes.
    import textwrap

    from frontier.distributed import run_policy

    run_dir, _ = finished_run
    doc = run_policy.__doc__
    code = doc[doc.index("    from frontier"):doc.index("\n\nThe policy conditions")]
    example = textwrap.dedent(code).replace('"runs/quick"', repr(str(run_dir)))
    scope: dict = {}
    exec(example, scope)
    policy, envs = scope["policy"], scope["envs"]
    assert len(scope["actions"]) == 4
    returns = [0.0] * 4
    obs = [env.reset(seed=100 + i)[0] for i, env in enumerate(envs)]
    policy.reset()
    done = [False] * 4
    while not all(done):
        actions = policy.act(obs)
        steps = [env.step(a) for env, a in zip(envs, actions)]
        policy.reward([r for _, r, *_ in steps])
        for i, (o, r, term, trunc, _) in enumerate(steps):
            if not done[i]:
                returns[i] += r
                done[i] = term or trunc
            obs[i] = o
    assert min(returns) > 100  # random play scores ~22; the run's own evaluation scored > 0.6 normalized
    with pytest.raises(ValueError, match="not one the run trained on"):
        run_policy.load_policy(run_dir, "Pendulum-v1")
