"""RLlib set-up (the task registered as a gymnasium env, the algorithm config) and export of its RLModule."""
from __future__ import annotations

import numpy as np
from torch import nn

from frontier.envs.experts.rl import ACTIVATIONS
from frontier.zoo.config import ExpertTrainConfig


def env_name(task: str) -> str:
    return f"frontier/{task}"


def register(task: str) -> None:
    """Register the task's agent-side env with RLlib (by name: EnvRunner processes rebuild it)."""
    from ray.tune.registry import register_env

    def creator(env_config):
        from frontier.envs.registry import get_task

        return get_task(task).make_env()

    register_env(env_name(task), creator)


def algo_config(cfg: ExpertTrainConfig):
    """The RLlib AlgorithmConfig of a run (new API stack)."""
    from ray.rllib.connectors.env_to_module import MeanStdFilter
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    model = DefaultModelConfig(fcnet_hiddens=list(cfg.hidden), fcnet_activation=cfg.activation,
                               head_fcnet_hiddens=[], vf_share_layers=False)
    if cfg.algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig

        # No reward scaling here, so value targets reach ~1/(1-gamma) x reward: RLlib's
        # default value-loss clip (10) would stall the critic.
        c = PPOConfig().training(lr=cfg.lr, gamma=cfg.gamma, lambda_=0.95, clip_param=0.2, vf_clip_param=1e6,
                                 entropy_coeff=0.0, train_batch_size_per_learner=cfg.batch,
                                 minibatch_size=cfg.minibatch, num_epochs=cfg.epochs, grad_clip=0.5)
    else:
        from ray.rllib.algorithms.sac import SACConfig

        c = SACConfig().training(actor_lr=cfg.lr, critic_lr=cfg.lr, alpha_lr=cfg.lr, gamma=cfg.gamma,
                                 train_batch_size_per_learner=cfg.batch,
                                 num_steps_sampled_before_learning_starts=min(10_000, max(1, cfg.steps // 20)))
        c = c.reporting(min_sample_timesteps_per_iteration=1000)
    return (
        c.environment(env_name(cfg.task))
        .env_runners(num_env_runners=cfg.env_runners, num_envs_per_env_runner=cfg.envs_per_runner,
                     env_to_module_connector=lambda env, spaces=None, device=None: MeanStdFilter())
        .rl_module(model_config=model)
        .debugging(seed=cfg.seed)
    )


def export_net(module, algo: str) -> tuple[nn.Sequential, list[str]]:
    """The policy path of an RLlib torch RLModule as a plain nn.Sequential (+ its layer names)."""
    if algo == "ppo":
        enc = module.encoder
        trunk = getattr(enc, "actor_encoder", None) or enc.encoder
    else:
        trunk = module.pi_encoder
    mods, names = [], []
    for m in [*trunk.net.mlp, *module.pi.net.mlp]:
        if isinstance(m, nn.Linear):
            lin = nn.Linear(m.in_features, m.out_features)
            lin.load_state_dict({k: v.detach().cpu() for k, v in m.state_dict().items()})
            mods.append(lin)
            names.append("linear")
            continue
        name = next((n for n, cls in ACTIVATIONS.items() if type(m) is cls), None)
        if name is None:
            raise ValueError(f"cannot export RLlib layer {m!r} (supported: Linear, {', '.join(ACTIVATIONS)})")
        mods.append(ACTIVATIONS[name]())
        names.append(name)
    return nn.Sequential(*mods), names


def mean_std_state(algo) -> dict | None:
    """Mean/std of the local EnvRunner's MeanStdFilter (synced from all runners), or None."""
    from ray.rllib.connectors.env_to_module import MeanStdFilter
    from ray.rllib.utils.numpy import SMALL_NUMBER

    pipeline = algo.env_runner._env_to_module
    filt = next((c for c in pipeline.connectors if isinstance(c, MeanStdFilter)), None)
    if filt is None or filt._filters is None:
        return None
    stats = next(iter(filt._filters.values())).running_stats
    return {"mean": np.asarray(stats.mean, dtype=np.float64).tolist(),
            "std": np.asarray(stats.std, dtype=np.float64).tolist(),
            "eps": float(SMALL_NUMBER), "clip": filt.clip_by_value if filt.clip_by_value else None,
            "count": int(stats.num_pushes)}
