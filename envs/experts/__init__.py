"""Expert sources: scripted controllers, filtered random attempts, RL policies (envs.experts.rl);
stored datasets are envs.datasets, and envs.registry.make_expert picks a task's source by kind."""
from frontier.envs.experts.base import (
    Controller,
    ExpertSource,
    FilteredExpert,
    PolicyExpert,
    filtered,
    random_controller,
)

__all__ = ["Controller", "ExpertSource", "FilteredExpert", "PolicyExpert", "filtered", "random_controller"]
