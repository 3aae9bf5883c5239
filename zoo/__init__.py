"""RL experts trained with RLlib, exported without it (the `frontier experts` commands: cli/experts.py).

    frontier experts train InvertedPendulum-v5 --algo ppo --steps 60000 --seed 0 --zoo
    frontier experts list --json
    frontier experts medium-replay runs/experts/InvertedPendulum-v5-ppo-s0   # its snapshots -> the zoo

Training uses RLlib's new API stack (RLModule, Learner, EnvRunner, ConnectorV2) on the
task's own `TaskSpec.make_env()`, so the policy sees exactly what the agent sees (Box
actions in [-1, 1]). Observations go through RLlib's MeanStdFilter connector; its running
mean/std are exported with the policy. The run directory holds the RLlib checkpoint
(`checkpoint/`, for `--resume`), `progress.json` (counters and costs at that checkpoint),
`snapshots/` (a policy + card every `--snapshot-every` env steps) and the final expert and
medium policies. Exported policies are plain MLPs read by `envs.experts.rl` (no Ray).

Modules: config (ExpertTrainConfig), meter (CPU-seconds of a process tree, library versions),
rllib (RLlib algorithm set-up and RLModule export), trainer (ExpertTrainer: train, snapshot,
pick the expert and medium policies), replay_set (a zoo medium-replay set from a run's snapshots).
"""
