"""When a run trains, explores, evaluates and checkpoints: pure functions of the config and the
run's counters (no actors, no clock), which the trainer (distributed/trainer.py) follows.

    n = next_chunk(cfg, updates)                   # updates in the next train call
    evaluation_due(cfg, updates), checkpoint_due(cfg, updates)
    explore_allowed(cfg, updates, explored, in_flight)   # the exploration rate limit
"""
from __future__ import annotations

from frontier.distributed.config import RunConfig


def _next_multiple(n: int, k: int) -> int:
    return (n // k + 1) * k


def planned_updates(cfg: RunConfig) -> int:
    return cfg.train.pretrain_updates + cfg.train.online_updates


def next_chunk(cfg: RunConfig, updates: int) -> int:
    """Updates in the next train call: up to the next weights publication, evaluation,
    checkpoint, online round or phase boundary, whichever comes first."""
    u = updates
    stops = [planned_updates(cfg), _next_multiple(u, cfg.rollout.weights_every),
             _next_multiple(u, cfg.train.eval_every), _next_multiple(u, cfg.checkpoint_every)]
    if u < cfg.train.pretrain_updates:
        stops.append(cfg.train.pretrain_updates)
    else:
        pre = cfg.train.pretrain_updates
        stops.append(pre + _next_multiple(u - pre, cfg.train.updates_per_round))
    return min(stops) - u


def evaluation_due(cfg: RunConfig, updates: int) -> bool:
    """An evaluation every `train.eval_every` updates, but not at the last one: the final
    evaluation is that one."""
    return updates % cfg.train.eval_every == 0 and updates < planned_updates(cfg)


def checkpoint_due(cfg: RunConfig, updates: int) -> bool:
    return updates % cfg.checkpoint_every == 0


def explore_allowed(cfg: RunConfig, updates: int, explored: int, in_flight: int) -> bool:
    """The exploration rate limit: one more chunk only while the exploration steps collected
    (`explored`) and in flight (`in_flight` chunks) stay within `explore_steps_per_round` per
    `updates_per_round` online updates. Actors running flat out would flood the store with
    exploration data and change what the learner trains on with the machine's speed."""
    t = cfg.train
    rounds = max(0, updates - t.pretrain_updates) // t.updates_per_round + 1
    return explored + in_flight * t.explore_steps_per_round < rounds * t.explore_steps_per_round
