"""Expert sources (scripted controllers, filtered attempts; RL policies and data sets later)."""
from envs.experts.base import (
    Controller,
    ExpertSource,
    FilteredExpert,
    PolicyExpert,
    filtered,
    make_expert,
    random_controller,
)

__all__ = ["Controller", "ExpertSource", "FilteredExpert", "PolicyExpert", "filtered", "make_expert", "random_controller"]
