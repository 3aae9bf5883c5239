"""Shared tiny tasks, models and episodes for the agents tests."""
import numpy as np
import pytest
import torch

from frontier.agents.model import ModelConfig
from frontier.agents.spaces import Box, Discrete, TaskInfo
from frontier.agents.trajectory import Episode

torch.set_num_threads(1)


@pytest.fixture
def tasks() -> list[TaskInfo]:
    """A continuous-action vector task, a discrete-action image task and a discrete-obs task."""
    return [
        TaskInfo("vec", Box((3,)), Box((2,)), reward_scale=0.1),
        TaskInfo("img", Box((12, 12, 2), "uint8"), Discrete(4), reward_scale=0.5),
        TaskInfo("grid", Discrete(5), Discrete(3)),
    ]


@pytest.fixture
def model_cfg() -> ModelConfig:
    return ModelConfig(embed_dim=32, n_layers=2, n_heads=2, context_len=6, max_timestep=64)


def random_episode(task: TaskInfo, length: int, rng: np.random.Generator) -> Episode:
    if isinstance(task.observation, Discrete):
        obs = rng.integers(0, task.observation.n, length)
    elif task.observation.is_image:
        obs = rng.integers(0, 256, (length, *task.observation.shape), dtype=np.uint8)
    else:
        obs = rng.normal(size=(length, *task.observation.shape)).astype(np.float32)
    if task.continuous:
        act = rng.uniform(-1, 1, (length, task.action.dim)).astype(np.float32)
    else:
        act = rng.integers(0, task.action.n, length)
    rew = rng.normal(size=length).astype(np.float32)
    return Episode(task.name, obs, act, rew, terminated=True, source={"kind": "explore"})


@pytest.fixture
def make_episode():
    return random_episode
