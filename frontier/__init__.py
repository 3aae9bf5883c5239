"""frontier: one sequence-model agent for many control tasks, trained online on Ray.

The code lives in the repository's top-level folders and installs under this one name:
frontier.agents (agents/), frontier.envs (envs/), frontier.distributed (distributed/) and
frontier.benchmarks (benchmarks/).
"""
__version__ = "0.1.0"
