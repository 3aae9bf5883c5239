"""The distributed side: rollout workers, the replay store, the learner service, the driver and the CLI.

The only package that imports ray.
"""
