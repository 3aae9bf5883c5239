"""Classic control tasks (gymnasium): CartPole-v1, Pendulum-v1, Acrobot-v1."""
from __future__ import annotations

from frontier.envs.experts.base import filtered
from frontier.envs.experts.scripted import FACTORIES
from frontier.envs.spec import TaskSpec


def tasks() -> list[TaskSpec]:
    # random_return / expert_return measured with `python -m frontier.envs.measure_references`
    # (20 episodes, seeds 1000..1019).
    return [
        TaskSpec(
            name="CartPole-v1",
            env="CartPole-v1",
            suite="classic",
            max_episode_steps=500,
            reward_scale=0.01,
            eval_target=500.0,  # the cap
            explore_target=500.0,
            experts={"scripted": FACTORIES["CartPole"], "filtered": filtered},
            random_return=21.4,
            expert_return=500.0,
        ),
        TaskSpec(
            name="Pendulum-v1",
            env="Pendulum-v1",
            suite="classic",
            max_episode_steps=200,
            reward_scale=0.01,
            eval_target=-160.0,
            explore_target=-100.0,  # returns are <= 0; ask for a little better than the expert
            experts={"scripted": FACTORIES["Pendulum"], "filtered": filtered},
            random_return=-1209.9,
            expert_return=-160.7,
        ),
        TaskSpec(
            name="Acrobot-v1",
            env="Acrobot-v1",
            suite="classic",
            max_episode_steps=500,
            reward_scale=0.01,
            eval_target=-88.0,
            explore_target=-70.0,
            experts={"scripted": FACTORIES["Acrobot"], "filtered": filtered},
            random_return=-500.0,
            expert_return=-88.2,
        ),
    ]
