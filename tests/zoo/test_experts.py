"""RL experts with real RLlib: export matches the RLModule, cards, resume, `experts list`."""
import json

import numpy as np
import pytest
import ray
import torch

from frontier.cli import main
from frontier.envs.experts.rl import MLPPolicy, ReplayExpert, save_policy, zoo_cards, zoo_replay
from frontier.envs.registry import get_task
from frontier.zoo.config import ExpertTrainConfig
from frontier.zoo.trainer import ExpertTrainer

torch.set_num_threads(1)

CARD_FIELDS = ("id", "task", "role", "algorithm", "hyperparameters", "seed", "env_steps", "wall_s", "cpu_s",
               "cpu_s_how", "gpu_s", "policy", "command", "versions", "evaluation")


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def rllib_deterministic(module, obs_normalized: np.ndarray) -> np.ndarray:
    """RLlib's own deterministic action for already-normalized observations."""
    from ray.rllib.core.columns import Columns

    with torch.no_grad():
        out = module.forward_inference({Columns.OBS: torch.from_numpy(obs_normalized)})
    dist = module.get_inference_action_dist_cls().from_logits(out[Columns.ACTION_DIST_INPUTS])
    return dist.to_deterministic().sample().numpy()


def normalize(policy: MLPPolicy, obs: np.ndarray) -> np.ndarray:
    norm = policy.card["policy"]["obs_norm"]
    if norm is None:
        return obs
    x = (obs - np.asarray(norm["mean"])) / (np.asarray(norm["std"]) + norm["eps"])
    return np.clip(x, -norm["clip"], norm["clip"]).astype(np.float32)


@pytest.mark.parametrize("task,algo,iterations", [("CartPole-v1", "ppo", 2), ("Pendulum-v1", "ppo", 1),
                                                  ("Pendulum-v1", "sac", 0)])
def test_exported_policy_acts_like_the_rlmodule(ray_instance, tmp_path, task, algo, iterations):
    cfg = ExpertTrainConfig(task=task, algo=algo, steps=1000, batch=500, minibatch=250, epochs=1, hidden=(16, 16),
                            out=str(tmp_path), eval_episodes=2)
    trainer = ExpertTrainer(cfg, quiet=True)
    try:
        for _ in range(iterations):
            trainer.step()
        card = trainer.export(tmp_path / "pol", "expert", episodes=2, eval_seed=cfg.eval_seed)
        module = trainer.algo.get_module()
        policy = MLPPolicy.load(tmp_path / "pol")
        obs = np.random.default_rng(0).normal(0, 1, (16, policy.obs_dim)).astype(np.float32)
        want = rllib_deterministic(module, normalize(policy, obs))
    finally:
        trainer.stop()
    got = policy.act(obs)
    if algo == "sac":
        # RLlib's TorchSquashedGaussian.to_deterministic() returns the pre-tanh mean; the
        # exported policy acts with the squashed mean, tanh(mu), the action SAC trained on.
        want = np.tanh(want)
    if algo == "ppo" and task == "CartPole-v1":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert card["env_steps"] == 500 * iterations
    if iterations:
        # The filter saw every sampled observation (plus the resets' first observations).
        assert card["policy"]["obs_norm"]["count"] >= card["env_steps"]
    assert card["evaluation"]["episodes"] == 2 and len(card["evaluation"]["returns"]) == 2


def test_train_resume_list(ray_instance, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["experts", "train", "CartPole-v1", "--batch", "500", "--minibatch", "250", "--epochs", "1",
            "--hidden", "16,16", "--eval-episodes", "2", "--snapshot-eval-episodes", "1", "--snapshot-every", "500",
            "--env-runners", "1", "--out", str(out), "--quiet"]
    assert main(base + ["--steps", "1000"]) == 0
    first = json.loads((out / "CartPole-v1-ppo-s0-expert.json").read_text())
    for key in CARD_FIELDS:
        assert key in first, key
    assert first["env_steps"] == 1000 and first["gpu_s"] == 0.0 and first["cpu_s"] > 0
    assert first["versions"]["ray"] == ray.__version__
    assert len(list((out / "snapshots").glob("*.json"))) == 2
    # A second run into the same directory is refused; --resume continues the counters.
    assert main(base + ["--steps", "1000"]) == 2
    assert main(base + ["--steps", "2000", "--resume"]) == 0
    second = json.loads((out / "CartPole-v1-ppo-s0-expert.json").read_text())
    # The expert is the best-ranked snapshot, charged the whole run's cost.
    assert second["env_steps"] == 2000
    assert second["wall_s"] > first["wall_s"] and second["cpu_s"] > first["cpu_s"]
    assert len(list((out / "snapshots").glob("*.json"))) == 4
    snapshots = json.loads((out / "progress.json").read_text())["snapshots"]
    pick = max(snapshots, key=lambda s: s["return_mean"])
    assert second["snapshot_of"] == pick["id"] and second["snapshot_env_steps"] == pick["env_steps"]
    # A medium policy is picked only when the expert beats the random reference (a 2000-step
    # CartPole policy may not) and an earlier snapshot exists; it is one of them, re-evaluated.
    medium_path = out / "CartPole-v1-ppo-s0-medium.json"
    beats_random = second["evaluation"]["return_mean"] > get_task("CartPole-v1").random_return
    assert medium_path.exists() == (beats_random and pick is not snapshots[0])
    printed = capsys.readouterr().out
    if medium_path.exists():
        medium = json.loads(medium_path.read_text())
        assert medium["role"] == "medium" and medium["snapshot_of"].startswith("CartPole-v1-ppo-s0-0")
        assert isinstance(medium["medium_in_range"], bool) and medium["evaluation"]["episodes"] == 2
    else:
        assert "no medium policy" in printed

    # --zoo-dir listing of the freshly trained run, and of the committed zoo.
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for f in out.glob("CartPole-v1-ppo-s0-*.*"):
        (zoo / f.name).write_bytes(f.read_bytes())
    assert main(["experts", "list", "--json", "--zoo-dir", str(zoo)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["id"], r["role"]) for r in rows} == {("CartPole-v1-ppo-s0-expert", "expert")} | (
        {("CartPole-v1-ppo-s0-medium", "medium")} if medium_path.exists() else set())
    assert next(r for r in rows if r["role"] == "expert")["env_steps"] == 2000
    assert main(["experts", "list", "--json"]) == 0
    committed = json.loads(capsys.readouterr().out)
    assert committed and {r["id"] for r in committed} == {c["id"] for c in zoo_cards()}
    assert all(r["return_mean"] is not None and r["cpu_s"] > 0 for r in committed)

    # Re-evaluation of an exported policy, without Ray in the loop.
    assert main(["experts", "eval", str(out / "CartPole-v1-ppo-s0-expert.safetensors"), "--episodes", "2"]) == 0
    assert "CartPole-v1-ppo-s0-expert: return" in capsys.readouterr().out


def test_bad_input_exits_2_naming_the_problem(tmp_path, capsys):
    assert main(["experts", "train", "NoSuchTask-v0", "--steps", "10"]) == 2
    assert "NoSuchTask-v0" in capsys.readouterr().err
    assert main(["experts", "train", "CartPole-v1", "--out", str(tmp_path), "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["experts", "train", "CartPole-v1", "--hidden", "a,b"]) == 2
    assert "--hidden" in capsys.readouterr().err
    (tmp_path / "x.json").write_text('{"id": "x", "task": "CartPole-v1", "algo')  # truncated card
    assert main(["experts", "list", "--zoo-dir", str(tmp_path)]) == 2
    assert str(tmp_path / "x.json") in capsys.readouterr().err


def _snapshot_run(tmp_path, returns: list[float], task: str = "Pendulum-v1"):
    """A `frontier experts train` run directory with one tiny snapshot policy per return."""
    run = tmp_path / "run"
    (run / "snapshots").mkdir(parents=True)
    snapshots = []
    for i, ret in enumerate(returns):
        torch.manual_seed(i)
        sid = f"{task}-ppo-s0-{1000 * (i + 1):09d}"
        card = {"id": sid, "task": task, "algorithm": "ppo", "role": "snapshot", "env_steps": 1000 * (i + 1),
                "wall_s": 1.0 + i, "cpu_s": 2.0 + i, "command": "frontier experts train ...", "versions": {},
                "policy": {"layers": ["linear"], "head": "gaussian", "action_dim": 1, "obs_norm": None}}
        save_policy(run / "snapshots" / sid, torch.nn.Sequential(torch.nn.Linear(3, 2)), card)
        snapshots.append({"id": sid, "env_steps": 1000 * (i + 1), "return_mean": ret, "path": "elsewhere"})
    (run / "progress.json").write_text(json.dumps({"config": {"task": task}, "snapshots": snapshots[::-1]}))
    return run


def _zoo_with_medium(tmp_path, ret: float, task: str = "Pendulum-v1"):
    zoo = tmp_path / "zoo"
    card = {"id": f"{task}-ppo-s0-medium", "task": task, "algorithm": "ppo", "role": "medium",
            "evaluation": {"return_mean": ret},
            "policy": {"layers": ["linear"], "head": "gaussian", "action_dim": 1, "obs_norm": None}}
    save_policy(zoo / card["id"], torch.nn.Sequential(torch.nn.Linear(3, 2)), card)
    return zoo


def test_medium_replay_set_holds_the_snapshots_up_to_the_medium_return_and_plays_them_in_turn(tmp_path, capsys):
    run, zoo = _snapshot_run(tmp_path, [-900.0, -600.0, -700.0, -400.0, -200.0]), _zoo_with_medium(tmp_path, -450.0)
    assert main(["experts", "medium-replay", str(run), "--zoo-dir", str(zoo)]) == 0
    assert "4 snapshots" in capsys.readouterr().out
    index = zoo_replay("Pendulum-v1", zoo)
    ids = [f"Pendulum-v1-ppo-s0-{1000 * i:09d}" for i in (1, 2, 3, 4)]  # in training order, up to the first >= -450
    assert [s["id"] for s in index["snapshots"]] == ids and index["medium_return"] == -450.0
    assert index["env_steps"] == 4000 and index["cpu_s"] == 5.0
    assert zoo_cards(zoo) == zoo_cards(zoo)[:1]  # the snapshots are not zoo policies of their own
    expert = ReplayExpert(get_task("Pendulum-v1"), index["paths"])
    episodes = list(expert.episodes(6, seed=10))
    assert [e.source["snapshot"] for e in episodes] == [ids[s % 4] for s in range(10, 16)]
    assert {e.source["policy"] for e in episodes} == {"Pendulum-v1-medium-replay"}
    again = list(ReplayExpert(get_task("Pendulum-v1"), index["paths"]).episodes(6, seed=10))
    assert [e.ret for e in again] == [e.ret for e in episodes]


def test_medium_replay_set_refuses_a_run_that_never_reaches_medium(tmp_path, capsys):
    run, zoo = _snapshot_run(tmp_path, [-900.0, -600.0]), _zoo_with_medium(tmp_path, -450.0)
    assert main(["experts", "medium-replay", str(run), "--zoo-dir", str(zoo)]) == 2
    assert "no snapshot reaches the medium policy's return -450.0 (best -600.0)" in capsys.readouterr().err
    assert not (zoo / "medium-replay").exists()
    assert main(["experts", "medium-replay", str(run), "--zoo-dir", str(tmp_path / "empty")]) == 2
    assert "has no medium policy of Pendulum-v1" in capsys.readouterr().err
