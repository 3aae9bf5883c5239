"""envs.seeding: one derivation of every seed, disjoint from the reference measurements' seeds."""
import pytest

from frontier.envs.references import REFERENCE_SEED
from frontier.envs.seeding import PURPOSES, RESERVED, STREAM, stream_seed


def test_streams_are_reproducible_distinct_and_clear_of_the_reserved_seeds():
    keys = [(p, s, t, w) for p in PURPOSES for s in (0, 1, 2, 10**6) for t in ("", "CartPole-v1", "Hopper-v5")
            for w in (0, 1, 7)]
    bases = [stream_seed(*k) for k in keys]
    assert bases == [stream_seed(*k) for k in keys]
    assert len(set(bases)) == len(bases)
    assert all(RESERVED <= b < 2**31 - STREAM for b in bases)
    assert RESERVED > REFERENCE_SEED + 1000  # the references' episodes sit in the reserved range


def test_a_tasks_expert_stream_does_not_depend_on_the_other_tasks_of_the_run():
    # Keyed by name, not by position in the run's task list.
    assert stream_seed("expert", 1, "Hopper-v5") == stream_seed("expert", 1, "Hopper-v5", 0)
    assert stream_seed("expert", 1, "Hopper-v5") != stream_seed("expert", 1, "Walker2d-v5")


def test_bad_keys_are_refused():
    with pytest.raises(ValueError, match="unknown seed purpose 'train'"):
        stream_seed("train", 0)
    with pytest.raises(ValueError, match=">= 0"):
        stream_seed("expert", -1)
