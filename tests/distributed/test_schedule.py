"""The schedule's decisions, without actors: train-call boundaries, when to evaluate and
checkpoint, and the exploration rate limit."""
from frontier.distributed import config
from frontier.distributed.schedule import checkpoint_due, evaluation_due, explore_allowed, next_chunk, planned_updates

CFG = config.from_dict({"tasks": ["CartPole-v1"],
                        "train": {"pretrain_updates": 250, "online_updates": 100, "updates_per_round": 40,
                                  "explore_steps_per_round": 500, "eval_every": 150},
                        "rollout": {"weights_every": 60}, "checkpoint_every": 100})


def chunks(cfg) -> list[int]:
    """Where each train call of the whole run ends."""
    u, ends = 0, []
    while u < planned_updates(cfg):
        u += next_chunk(cfg, u)
        ends.append(u)
    return ends


def test_a_train_call_ends_at_every_weights_evaluation_checkpoint_phase_and_round_boundary():
    # weights every 60, evaluations every 150, checkpoints every 100, pretraining ends at 250,
    # online rounds of 40 from there (290, 330), the run at 350.
    assert chunks(CFG) == [60, 100, 120, 150, 180, 200, 240, 250, 290, 300, 330, 350]


def test_no_scheduled_evaluation_at_the_last_update_the_final_one_is_there():
    assert [u for u in range(1, 351) if evaluation_due(CFG, u)] == [150, 300]
    last = config.from_dict({"tasks": ["CartPole-v1"], "train": {"pretrain_updates": 200, "online_updates": 100,
                                                                  "eval_every": 150}})
    assert [u for u in range(1, 301) if evaluation_due(last, u)] == [150]
    assert [u for u in range(1, 351) if checkpoint_due(CFG, u)] == [100, 200, 300]


def test_exploration_is_limited_to_its_steps_per_round_of_online_updates():
    # Before and in the first online round: one chunk's worth of steps (500), in flight or collected.
    assert explore_allowed(CFG, 250, explored=0, in_flight=0)
    assert not explore_allowed(CFG, 250, explored=0, in_flight=1)
    assert not explore_allowed(CFG, 289, explored=500, in_flight=0)
    # After 40 online updates the next round's 500 steps are allowed.
    assert explore_allowed(CFG, 290, explored=500, in_flight=0)
    assert not explore_allowed(CFG, 290, explored=600, in_flight=1)
