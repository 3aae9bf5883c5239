"""Exported RL policies: loading, deterministic acting, bad files, the zoo, no Ray."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from frontier.envs.registry import get_task, make_expert
from frontier.envs.experts.rl import MLPPolicy, RLExpert, policy_paths, save_policy, zoo_cards, zoo_policy, zoo_replay

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path, head="gaussian", obs_dim=3, action_dim=1, norm=True, task="Pendulum-v1", name="p"):
    torch.manual_seed(0)
    out = action_dim if head == "categorical" else 2 * action_dim
    net = nn.Sequential(nn.Linear(obs_dim, 8), nn.Tanh(), nn.Linear(8, out))
    obs_norm = {"mean": [0.5] * obs_dim, "std": [2.0] * obs_dim, "eps": 1e-6, "clip": 3.0} if norm else None
    card = {"id": name, "task": task, "algorithm": "ppo",
            "policy": {"layers": ["linear", "tanh", "linear"], "head": head, "action_dim": action_dim,
                       "obs_norm": obs_norm}}
    save_policy(tmp_path / name, net, card)
    return tmp_path / name, net


@pytest.mark.parametrize("head", ["gaussian", "squashed_gaussian", "categorical"])
def test_deterministic_actions_match_the_network(tmp_path, head):
    stem, net = write(tmp_path, head=head, action_dim=2)
    policy = MLPPolicy.load(stem.with_suffix(".safetensors"))
    obs = np.random.default_rng(0).normal(0, 10, (5, 3)).astype(np.float32)
    x = np.clip((obs - 0.5) / (2.0 + 1e-6), -3.0, 3.0)  # normalization, clipped
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    got = policy.act(obs)
    if head == "categorical":
        np.testing.assert_array_equal(got, out.argmax(-1))
        assert isinstance(policy(obs[0], None), int)
    else:
        want = out[:, :2] if head == "gaussian" else np.tanh(out[:, :2])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert policy(obs[0], None).shape == (2,)


def test_any_of_the_two_files_or_the_stem_loads(tmp_path):
    stem, _ = write(tmp_path)
    ids = {MLPPolicy.load(p).card["id"] for p in (stem, stem.with_suffix(".json"), stem.with_suffix(".safetensors"))}
    assert ids == {"p"}


def test_rl_expert_episodes_carry_provenance(tmp_path):
    stem, _ = write(tmp_path)
    expert = RLExpert(get_task("Pendulum-v1"), stem)
    eps = list(expert.episodes(2, seed=7))
    assert [e.source for e in eps] == [{"kind": "rl", "policy": "p", "seed": 7}, {"kind": "rl", "policy": "p", "seed": 8}]
    assert eps[0].actions.shape == (200, 1) and np.all(np.abs(eps[0].actions) <= 1.0)
    assert expert.env_steps == 400
    # Same seeds, same deterministic policy: same episode.
    again = next(RLExpert(get_task("Pendulum-v1"), stem).episodes(1, seed=7))
    np.testing.assert_array_equal(again.actions, eps[0].actions)


def test_rl_expert_for_another_task_is_refused(tmp_path):
    stem, _ = write(tmp_path, task="Pendulum-v1")
    with pytest.raises(ValueError, match="not 'CartPole-v1'"):
        RLExpert(get_task("CartPole-v1"), stem)


def _damage(path: Path, how: str):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\xffnot a file" * 3)
    elif how == "delete":
        path.unlink()


@pytest.mark.parametrize("which", ["safetensors", "json"])
@pytest.mark.parametrize("how", ["truncate", "garbage", "delete"])
def test_bad_files_name_the_file(tmp_path, which, how):
    stem, _ = write(tmp_path)
    bad = stem.with_suffix("." + which)
    _damage(bad, how)
    with pytest.raises(ValueError) as e:
        MLPPolicy.load(stem)
    assert str(bad) in str(e.value)


def test_shape_mismatch_names_the_file(tmp_path):
    stem, _ = write(tmp_path, action_dim=1)
    card_path = stem.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card["policy"]["action_dim"] = 3  # the network has 2 outputs, a gaussian head of 3 needs 6
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="outputs") as e:
        MLPPolicy.load(stem)
    assert str(stem.with_suffix(".safetensors")) in str(e.value)

    card["policy"]["action_dim"] = 1
    card["policy"]["layers"] = ["linear", "tanh", "linear", "tanh", "linear"]  # more layers than tensors
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="do not match") as e:
        MLPPolicy.load(stem)
    assert str(stem.with_suffix(".safetensors")) in str(e.value)

    card["policy"]["layers"] = ["linear", "tanh", "linear"]
    card["policy"]["obs_norm"]["mean"] = [0.0] * 5
    card_path.write_text(json.dumps(card))
    with pytest.raises(ValueError, match="normalization") as e:
        MLPPolicy.load(stem)
    assert str(card_path) in str(e.value)


def test_wrong_observation_shape(tmp_path):
    stem, _ = write(tmp_path)
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        MLPPolicy.load(stem).act(np.zeros((1, 4), np.float32))


def test_zoo_listing_and_lookup(tmp_path):
    write(tmp_path, name="a")
    card = json.loads((tmp_path / "a.json").read_text())
    card["role"] = "expert"
    (tmp_path / "a.json").write_text(json.dumps(card))
    cards = zoo_cards(tmp_path)
    assert [c["id"] for c in cards] == ["a"] and cards[0]["path"] == str(tmp_path / "a.safetensors")
    assert zoo_policy("Pendulum-v1", "expert", tmp_path)["id"] == "a"
    assert zoo_policy("Pendulum-v1", "medium", tmp_path) is None
    (tmp_path / "a.safetensors").unlink()
    with pytest.raises(ValueError, match="a.safetensors"):
        zoo_cards(tmp_path)


def test_a_corrupt_zoo_card_is_skipped_by_discovery_not_fatal(tmp_path, monkeypatch):
    from frontier.envs.experts import rl
    from frontier.envs.suites import mujoco

    write(tmp_path, name="good")
    (tmp_path / "bad.json").write_text("{not json")
    errors = {}
    assert [c["id"] for c in zoo_cards(tmp_path, errors=errors)] == ["good"]
    assert list(errors) == [str(tmp_path / "bad.json")] and "is unreadable" in errors[str(tmp_path / "bad.json")]
    monkeypatch.setattr(rl, "ZOO_DIR", tmp_path)
    with pytest.warns(UserWarning, match="zoo card skipped"):
        names = [t.name for t in mujoco.tasks()]
    assert "Hopper-v5" in names and "InvertedPendulum-v5" in names


def test_committed_zoo_entries_load_and_match_their_cards():
    cards = zoo_cards()
    assert cards, "the committed zoo (envs/zoo) is empty"
    for card in cards:
        spec = get_task(card["task"])
        expert = RLExpert(spec, card["path"])
        ev = card["evaluation"]
        returns = [float(ep.rewards.sum()) for ep in expert.episodes(3, seed=ev["seed"])]
        # The card's first three evaluation seeds. A bit-exact replay holds only on the CPU that
        # wrote the card (float reductions differ between instruction sets, and HalfCheetah's
        # trajectories drift apart from there), so: the same returns twice here, and within 10%
        # of the card's.
        assert [float(ep.rewards.sum()) for ep in expert.episodes(1, seed=ev["seed"])] == returns[:1]
        assert abs(np.mean(returns) - np.mean(ev["returns"][:3])) <= 0.1 * abs(ev["return_mean"]), card["id"]
    # Built-in tasks with a zoo expert offer it as their "rl" source.
    task = next(c["task"] for c in cards if c.get("role") == "expert")
    assert make_expert(get_task(task), "rl").kind == "rl"
    # ... and a zoo medium policy as their "rl-medium" source (sampled actions) and "rl-medium-det".
    medium = next(c for c in cards if c.get("role") == "medium")
    assert make_expert(get_task(medium["task"]), "rl-medium").policy_id == medium["id"] + "-sampled"
    assert make_expert(get_task(medium["task"]), "rl-medium-det").policy_id == medium["id"]


@pytest.mark.parametrize("head", ["gaussian", "categorical"])
def test_sampled_actions_follow_the_distribution_and_the_seed(tmp_path, head):
    stem, net = write(tmp_path, head=head, action_dim=2)
    policy = MLPPolicy.load(stem)
    obs = np.zeros((4000, 3), dtype=np.float32)
    a, b = policy.act(obs, np.random.default_rng(0)), policy.act(obs, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    with torch.no_grad():
        out = net(torch.from_numpy(np.clip((obs[:1] - 0.5) / (2.0 + 1e-6), -3, 3))).numpy()[0]
    if head == "gaussian":
        np.testing.assert_allclose(a.mean(0), out[:2], atol=0.1 * np.exp(out[2:]).max())
        np.testing.assert_allclose(a.std(0), np.exp(out[2:]), rtol=0.1)
    else:
        p = np.exp(out - out.max()) / np.exp(out - out.max()).sum()
        np.testing.assert_allclose(np.bincount(a, minlength=2) / len(a), p, atol=0.05)


def test_sampled_medium_data_spreads_returns_and_replays_by_seed():
    task = "InvertedPendulum-v5"
    det, sampled = make_expert(get_task(task), "rl-medium-det"), make_expert(get_task(task), "rl-medium")
    det_returns = [ep.ret for ep in det.episodes(4, seed=7)]
    returns = [ep.ret for ep in sampled.episodes(4, seed=7)]
    assert returns == [ep.ret for ep in make_expert(get_task(task), "rl-medium").episodes(4, seed=7)]
    assert returns != det_returns and len(set(returns)) == 4


def test_loading_and_acting_never_imports_ray(tmp_path):
    stem, _ = write(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from frontier.envs.experts.rl import MLPPolicy, RLExpert, zoo_cards
        from frontier.envs.registry import get_task
        policy = MLPPolicy.load({str(stem)!r})
        ep = next(RLExpert(get_task("Pendulum-v1"), {str(stem)!r}).episodes(1, seed=0))
        for card in zoo_cards():
            next(RLExpert(get_task(card["task"]), card["path"]).episodes(1, seed=0))
        bad = sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "ray_")))
        print("RAY", bad, len(ep.rewards))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "RAY [] 200" in out.stdout


def test_policy_paths():
    assert policy_paths("z/a.safetensors") == (Path("z/a.safetensors"), Path("z/a.json"))
    assert policy_paths("z/a-v5") == (Path("z/a-v5.safetensors"), Path("z/a-v5.json"))


def test_committed_medium_replay_sets_load_and_give_lower_more_spread_returns_than_medium_data():
    for task in ("InvertedPendulum-v5", "Hopper-v5"):
        index = zoo_replay(task)
        if index is None:
            continue
        spec = get_task(task)
        n = len(index["snapshots"])
        assert n >= 5 and [s["env_steps"] for s in index["snapshots"]] == sorted(s["env_steps"] for s in index["snapshots"])
        replay = [ep.ret for ep in make_expert(spec, "rl-medium-replay").episodes(2 * n, seed=0)]
        medium = [ep.ret for ep in make_expert(spec, "rl-medium").episodes(2 * n, seed=0)]
        assert np.mean(replay) < np.mean(medium) and np.std(replay) > 0
    assert zoo_replay("InvertedPendulum-v5") is not None
