"""Shared setup of the tests that run the runtime (tests/distributed, tests/cli, tests/compare, tests/zoo):
Ray without token auth (tests only), tiny run configs."""
import copy
import os

# Real clusters keep Ray's token authentication on; tests run throwaway local instances.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import pytest  # noqa: E402

from frontier.distributed import config as config_mod  # noqa: E402

# A run that finishes in seconds on two cores: two tasks (discrete and continuous), a
# one-layer model, few updates, small exploration chunks so weights change between them.
TINY = {
    "tasks": ["CartPole-v1", "Pendulum-v1"],
    "seed": 0,
    "experts": {"episodes": 3},
    "model": {"embed_dim": 32, "n_layers": 1, "n_heads": 2, "context_len": 8, "dropout": 0.0},
    "learner": {"warmup_updates": 10},
    "replay": {"capacity": 20000},
    "train": {"batch_size": 16, "pretrain_updates": 20, "online_updates": 100, "updates_per_round": 10,
              "explore_steps_per_round": 40,
              "eval_every": 50, "eval_episodes": 1, "final_eval_episodes": 1},
    "rollout": {"envs_per_worker": 2, "explore_workers": 2, "eval_workers": 1, "weights_every": 10},
    "checkpoint_every": 50,
    "summary_every_s": 2.0,
}


@pytest.fixture
def tiny_config():
    """`tiny_config(key=value, ...)`: the TINY RunConfig with dotted-key overrides."""
    def make(*overrides: str):
        return config_mod.from_dict(copy.deepcopy(TINY), list(overrides))
    return make


@pytest.fixture(scope="module")
def frontier_ray():
    """An embedded Ray instance for one test module, with frontier's placement resources and
    logical CPUs for the learner, two explorers and one evaluator on this small machine."""
    import ray
    import torch

    from frontier.distributed.ray_executor import LEARNER_RESOURCE, ROLLOUT_RESOURCE

    torch.set_num_threads(1)
    ray.init(num_cpus=4, include_dashboard=False, resources={LEARNER_RESOURCE: 1, ROLLOUT_RESOURCE: 100},
             log_to_driver=False)
    yield
    ray.shutdown()
