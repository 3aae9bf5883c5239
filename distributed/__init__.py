"""The runtime: rollout workers, the replay store, the learner service, the trainer and its two
executors (in process, Ray actors), run state and checkpoints, the monitor, the run config.

The command line is frontier.cli, `frontier compare` is frontier.compare and RLlib expert
training is frontier.zoo: they build on this package, which imports none of them.
"""
