import dataclasses
import json

import numpy as np
import pytest

from frontier.envs.experts import FilteredExpert, PolicyExpert, random_controller
from frontier.envs.registry import get_task, make_expert
from frontier.envs.references import reference_returns

# (task, episodes, time cap or None, margin the scripted mean must beat the random mean by).
# Margins are half the spec's expert-random gap, except Atari, whose episodes are cut short
# here to keep the test fast (its spec references are for full-length episodes).
CASES = [
    ("CartPole-v1", 3, None, None),
    ("Pendulum-v1", 5, None, None),
    ("Acrobot-v1", 3, None, None),
    ("InvertedPendulum-v5", 2, None, None),
    ("InvertedDoublePendulum-v5", 2, None, None),
    ("Reacher-v5", 5, None, None),
    ("ALE/Pong-ram-v5", 2, 500, 5.0),
    ("ALE/Breakout-ram-v5", 2, 500, 5.0),
]


def mean_return(source, n, seed=0):
    return float(np.mean([ep.ret for ep in source.episodes(n, seed)]))


@pytest.mark.parametrize("name,n,cap,margin", CASES)
def test_scripted_beats_random_by_wide_margin(name, n, cap, margin):
    spec = get_task(name)
    if cap is not None:
        spec = dataclasses.replace(spec, max_episode_steps=cap)
    scripted = mean_return(make_expert(spec, "scripted"), n)
    random = mean_return(PolicyExpert(spec, random_controller, "random", "uniform-random"), n)
    if margin is None:
        margin = 0.5 * (spec.expert_return - spec.random_return)
    assert scripted - random >= margin, (scripted, random)


def test_pixel_atari_bot_reads_ram():
    spec = dataclasses.replace(get_task("ALE/Breakout-v5"), max_episode_steps=150)
    (ep,) = make_expert(spec, "scripted").episodes(1, seed=0)
    assert ep.observations.shape == (ep.length, 84, 84, 4) and ep.observations.dtype == np.uint8
    assert ep.actions.dtype == np.int64 and ep.ret > 0  # the bot launches the ball and hits bricks


def test_episodes_carry_provenance_and_deterministic_seeds():
    spec = get_task("Pendulum-v1")
    source = make_expert(spec, "scripted")
    eps = list(source.episodes(3, seed=10))
    assert [ep.source["seed"] for ep in eps] == [10, 11, 12]
    for ep in eps:
        assert ep.source["kind"] == "scripted" and ep.source["policy"] == source.policy_id
        assert ep.task == "Pendulum-v1" and ep.length == 200 and not ep.terminated
        assert ep.observations.shape == (200, 3) and ep.observations.dtype == np.float32
        assert ep.actions.shape == (200, 1) and ep.actions.dtype == np.float32
        assert np.all(np.abs(ep.actions) <= 1.0)
    assert source.env_steps == 600
    again = list(make_expert(spec, "scripted").episodes(2, seed=11))
    np.testing.assert_array_equal(again[0].observations, eps[1].observations)
    np.testing.assert_array_equal(again[1].rewards, eps[2].rewards)


def test_random_episodes_are_deterministic_per_seed():
    spec = get_task("CartPole-v1")
    a = list(PolicyExpert(spec, random_controller, "random", "r").episodes(2, seed=5))
    b = list(PolicyExpert(spec, random_controller, "random", "r").episodes(2, seed=5))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.actions, y.actions)
        assert x.actions.dtype == np.int64 and x.actions.shape == (x.length,)


def test_filtered_keeps_top_fraction_and_counts_all_steps():
    spec = get_task("CartPole-v1")
    source = FilteredExpert(spec, keep_fraction=0.25, pool_size=8)
    kept = list(source.episodes(4, seed=100))  # two pools of 8 attempts, top 2 of each
    assert len(kept) == 4
    attempts = list(PolicyExpert(spec, random_controller, "random", "r").episodes(16, seed=100))
    returns = {100 + i: ep.ret for i, ep in enumerate(attempts)}
    for pool, pair in ((range(100, 108), kept[:2]), (range(108, 116), kept[2:])):
        best = sorted(pool, key=lambda s: (-returns[s], s))[:2]
        assert [ep.source["seed"] for ep in pair] == best
    assert source.env_steps == sum(ep.length for ep in attempts)
    assert all(ep.source["kind"] == "filtered" for ep in kept)
    assert np.mean([ep.ret for ep in kept]) > np.mean(list(returns.values()))


def test_filtered_rejects_bad_fraction():
    with pytest.raises(ValueError, match="keep_fraction"):
        FilteredExpert(get_task("CartPole-v1"), keep_fraction=0.0)


def test_unknown_expert_kind_lists_kinds():
    with pytest.raises(KeyError, match=r"no expert of kind 'rl' \(kinds: filtered, scripted\)"):
        make_expert(get_task("CartPole-v1"), "rl")


def test_references_use_spec_values_else_measure_and_cache(tmp_path):
    cache = tmp_path / "references.json"
    assert reference_returns(get_task("CartPole-v1"), cache=cache) == (21.4, 500.0)
    spec = dataclasses.replace(get_task("CartPole-v1"), name="CartPole-unmeasured", random_return=None, expert_return=None)
    random_ret, expert_ret = reference_returns(spec, episodes=3, seed=0, cache=cache)
    assert random_ret < 100 and expert_ret == 500.0
    cached = json.loads(cache.read_text())["CartPole-unmeasured"]
    assert cached["random"] == random_ret and cached["episodes"] == 3
    cached["random"] = -1.0  # a cached value is reused, not re-measured
    cache.write_text(json.dumps({"CartPole-unmeasured": cached}))
    assert reference_returns(spec, episodes=3, seed=0, cache=cache) == (-1.0, 500.0)
    assert reference_returns(spec, episodes=4, seed=0, cache=cache)[0] != -1.0  # different settings: measured again
    assert reference_returns(spec, episodes=3, seed=0)[0] != -1.0  # no cache named: measured, nothing kept


def test_non_finite_references_are_an_error_and_never_cached(tmp_path, monkeypatch):
    from frontier.envs import references

    spec = dataclasses.replace(get_task("CartPole-v1"), name="CartPole-nan", random_return=None)
    monkeypatch.setattr(references, "random_returns", lambda *a: np.array([np.nan]))
    with pytest.raises(ValueError, match="random reference return is nan"):
        reference_returns(spec, cache=tmp_path / "references.json")
    assert not (tmp_path / "references.json").exists()
