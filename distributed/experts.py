"""`frontier experts train|list|eval|medium-replay`: RL experts trained with RLlib, exported without it.

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
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from torch import nn

from agents.spaces import Discrete
from distributed.errors import UsageError
from envs.experts.rl import (ACTIVATIONS, REPLAY_SUBDIR, ZOO_DIR, MLPPolicy, RLExpert, policy_paths, read_card,
                             save_policy, zoo_cards, zoo_policy)

ALGOS = ("ppo", "sac")
# A "medium" policy returns about a third to a half of the expert's (D4RL's medium sets);
# among snapshots the one closest to MEDIUM_TARGET of the final return (normalized) is chosen.
MEDIUM_RANGE = (1 / 3, 1 / 2)
MEDIUM_TARGET = 0.4
# Snapshots are ranked on env seeds eval_seed + SELECTION_SEEDS + j; the chosen expert and
# medium policies are evaluated on eval_seed + j, so their reported returns are not the ranking's.
SELECTION_SEEDS = 500_000


@dataclass
class ExpertTrainConfig:
    """One RL expert training run (`frontier experts train`)."""

    task: str
    """Task name (frontier registry)."""
    algo: str = "ppo"
    """RLlib algorithm: "ppo" or "sac"."""
    steps: int = 1_000_000
    """Env steps to train for (the run stops at the first iteration past it)."""
    seed: int = 0
    """RLlib seed (network init and training env seeds)."""
    out: str = ""
    """Run directory; default runs/experts/<task>-<algo>-s<seed>."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the policy and value/Q networks."""
    activation: str = "tanh"
    """Hidden activation (tanh, relu, silu, elu)."""
    lr: float = 3e-4
    """Learning rate of all networks."""
    gamma: float = 0.99
    """Discount."""
    batch: int = 2048
    """PPO: env steps per training iteration. SAC: replay minibatch size."""
    minibatch: int = 64
    """PPO: SGD minibatch size."""
    epochs: int = 10
    """PPO: passes over each batch."""
    env_runners: int = 0
    """Remote RLlib EnvRunner actors; 0 samples in this process (fastest on 2 cores)."""
    envs_per_runner: int = 1
    """Vectorized envs per EnvRunner."""
    snapshot_every: int = 0
    """Export a snapshot policy (and checkpoint) every this many env steps; 0: steps / 10."""
    snapshot_eval_episodes: int = 5
    """Evaluation episodes of each snapshot (the final expert uses eval_episodes)."""
    eval_episodes: int = 20
    """Evaluation episodes of the final expert and of the chosen medium policy."""
    eval_seed: int = 1_000_000
    """Env seed of the first evaluation episode (episode j uses eval_seed + j); apart from training seeds."""

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {', '.join(ALGOS)}, got {self.algo!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        for name in ("steps", "batch", "minibatch", "epochs", "envs_per_runner", "eval_episodes",
                     "snapshot_eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.env_runners < 0 or self.snapshot_every < 0:
            raise ValueError(f"env_runners and snapshot_every must be >= 0, got {self.env_runners}, {self.snapshot_every}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        if not self.out:
            self.out = str(Path("runs") / "experts" / f"{self.task.replace('/', '_')}-{self.algo}-s{self.seed}")
        if not self.snapshot_every:
            self.snapshot_every = max(1, self.steps // 10)

    @property
    def run_id(self) -> str:
        return f"{self.task.replace('/', '_')}-{self.algo}-s{self.seed}"

    def command(self) -> str:
        """The `frontier experts train` command that reproduces this run."""
        default = ExpertTrainConfig(task=self.task, algo=self.algo, steps=self.steps, seed=self.seed)
        parts = ["frontier experts train", self.task]
        for f in fields(self):
            if f.name in ("task", "out"):
                continue
            value = getattr(self, f.name)
            if f.name in ("algo", "steps", "seed") or value != getattr(default, f.name):
                flag = "--" + f.name.replace("_", "-")
                parts.append(f"{flag} {','.join(map(str, value)) if f.name == 'hidden' else value}")
        return " ".join(parts)


class TreeCPU:
    """CPU-seconds of this process and all its descendants (Ray GCS, raylet, workers).

    Read from /proc (Linux): each sample records every live descendant's utime+stime; a
    process's last sample counts, so CPU a descendant spends after its last sample is
    missed. Where /proc is absent only this process (and reaped children) is counted.
    """

    how = "utime+stime of this process and its descendants from /proc, sampled every training iteration"

    def __init__(self):
        self.seen: dict[int, float] = {}  # pid -> latest cumulative CPU-seconds
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _stat(self, pid: int) -> tuple[int, float] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        rest = text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) "
        return int(rest[1]), (int(rest[11]) + int(rest[12])) / self.tick  # ppid, utime+stime

    def sample(self) -> float:
        """Total CPU-seconds so far."""
        me = os.getpid()
        if not Path("/proc").is_dir():
            t = os.times()
            return t.user + t.system + t.children_user + t.children_system
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                s = self._stat(int(entry))
                if s is not None:
                    stats[int(entry)] = s
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        todo = [me]
        while todo:
            pid = todo.pop()
            if pid in stats:
                self.seen[pid] = stats[pid][1]
            todo.extend(children.get(pid, []))
        return sum(self.seen.values())


def library_versions() -> dict:
    import gymnasium
    import ray
    import torch

    versions = {"python": platform.python_version(), "ray": ray.__version__, "torch": torch.__version__,
                "gymnasium": gymnasium.__version__}
    try:
        import mujoco

        versions["mujoco"] = mujoco.__version__
    except ImportError:
        versions["mujoco"] = None
    return versions


def env_name(task: str) -> str:
    return f"frontier/{task}"


def register(task: str) -> None:
    """Register the task's agent-side env with RLlib (by name: EnvRunner processes rebuild it)."""
    from ray.tune.registry import register_env

    def creator(env_config):
        from envs.registry import get_task

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


def evaluate(spec, policy_path: Path, episodes: int, seed: int) -> dict:
    """Return mean/std of the EXPORTED policy over fresh env seeds seed..seed+episodes-1 (no RLlib)."""
    expert = RLExpert(spec, policy_path)
    returns = [float(ep.rewards.sum()) for ep in expert.episodes(episodes, seed)]
    return {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)), "episodes": episodes,
            "seed": seed, "env_steps": expert.env_steps, "returns": returns}


@dataclass
class Progress:
    """Counters and costs of a run at its last checkpoint (progress.json), summed over sessions."""

    env_steps: int = 0
    iterations: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    snapshots: list[dict] = field(default_factory=list)  # {"id", "env_steps", "return_mean", "path"}
    config: dict = field(default_factory=dict)


class ExpertTrainer:
    """Owns one RLlib Algorithm; trains, checkpoints, exports.

        trainer = ExpertTrainer(cfg, resume=False)   # Ray must be initialized
        trainer.train()                              # to cfg.steps, snapshots + checkpoints
        cards = trainer.finish()                     # final expert + medium, evaluated
    """

    def __init__(self, cfg: ExpertTrainConfig, resume: bool = False, quiet: bool = False,
                 since: tuple[float, float, TreeCPU] | None = None):
        """`since`: (wall time, CPU-seconds, meter) when this session started, so that Ray's
        start and the algorithm build are charged too; default: now."""
        from envs.registry import get_task

        self.cfg = cfg
        self.spec = get_task(cfg.task)
        self.out = Path(cfg.out)
        self.quiet = quiet
        self.cpu = since[2] if since else TreeCPU()
        self.progress = Progress(config=asdict(cfg))
        register(cfg.task)
        self.algo = algo_config(cfg).build_algo()
        if resume:
            state = json.loads((self.out / "progress.json").read_text())
            self.progress = Progress(**state)
            self.progress.config = asdict(cfg)  # this session's settings (e.g. a larger --steps)
            self.algo.restore_from_path(str((self.out / "checkpoint").resolve()))
        self.session_start, self.cpu_start = since[:2] if since else (time.time(), self.cpu.sample())
        self.last_return = float("nan")

    def costs(self) -> tuple[float, float]:
        """(wall_s, cpu_s) of all sessions so far."""
        return (self.progress.wall_s + time.time() - self.session_start,
                self.progress.cpu_s + self.cpu.sample() - self.cpu_start)

    def step(self) -> dict:
        """One RLlib training iteration; returns its result dict."""
        result = self.algo.train()
        self.progress.env_steps += int(result["env_runners"].get("num_env_steps_sampled", 0))
        self.progress.iterations += 1
        ret = result["env_runners"].get("episode_return_mean")
        if ret is not None and np.isfinite(ret):
            self.last_return = float(ret)
        self.cpu.sample()
        return result

    def checkpoint(self) -> None:
        """Save the algorithm, then progress.json, each swapped in whole so a kill leaves a usable pair."""
        wall, cpu = self.costs()
        tmp = self.out / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.algo.save_to_path(str(tmp.resolve()))
        state = asdict(self.progress)
        state.update(wall_s=wall, cpu_s=cpu)
        old = self.out / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if (self.out / "checkpoint").exists():
            (self.out / "checkpoint").rename(old)
        tmp.rename(self.out / "checkpoint")
        (self.out / "progress.json.tmp").write_text(json.dumps(state, indent=2))
        os.replace(self.out / "progress.json.tmp", self.out / "progress.json")
        shutil.rmtree(old, ignore_errors=True)

    def export(self, stem: Path, role: str, episodes: int, eval_seed: int, extra: dict | None = None) -> dict:
        """Write the current policy to `<stem>.safetensors|json`, evaluate it, return the card."""
        cfg = self.cfg
        net, layers = export_net(self.algo.get_module(), cfg.algo)
        info = self.spec.info()
        discrete = isinstance(info.action, Discrete)
        action_dim = info.action.n if discrete else int(np.prod(info.action.shape))
        head = "categorical" if discrete else ("squashed_gaussian" if cfg.algo == "sac" else "gaussian")
        wall, cpu = self.costs()
        card = {
            "id": stem.name,
            "task": cfg.task,
            "role": role,
            "algorithm": cfg.algo,
            "library": "rllib (new API stack)",
            "hyperparameters": {k: v for k, v in asdict(cfg).items() if k not in ("task", "algo", "seed", "out")},
            "seed": cfg.seed,
            "env_steps": self.progress.env_steps,
            "iterations": self.progress.iterations,
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "cpu_s_how": TreeCPU.how,
            "gpu_s": 0.0,
            "policy": {"layers": layers, "head": head, "action_dim": int(action_dim),
                       "obs_norm": mean_std_state(self.algo)},
            "command": cfg.command(),
            "versions": library_versions(),
            **(extra or {}),
        }
        save_policy(stem, net, card)
        card["evaluation"] = evaluate(self.spec, stem, episodes, eval_seed)
        save_policy(stem, net, card)
        return card

    def train(self) -> None:
        """Train to cfg.steps: snapshot + checkpoint every cfg.snapshot_every env steps."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        next_snap = (self.progress.env_steps // cfg.snapshot_every + 1) * cfg.snapshot_every
        columns = [TextColumn(f"{cfg.task} {cfg.algo}"), BarColumn(), MofNCompleteColumn(), TextColumn("env steps"),
                   TextColumn("return {task.fields[ret]}"), TimeElapsedColumn()]
        with Bar(*columns, disable=self.quiet, transient=False) as bar:
            job = bar.add_task("train", total=cfg.steps, completed=self.progress.env_steps, ret="-")
            while self.progress.env_steps < cfg.steps:
                self.step()
                bar.update(job, completed=min(self.progress.env_steps, cfg.steps), ret=f"{self.last_return:.1f}")
                if self.progress.env_steps >= next_snap or self.progress.env_steps >= cfg.steps:
                    self._snapshot(bar.console.print)
                    next_snap = (self.progress.env_steps // cfg.snapshot_every + 1) * cfg.snapshot_every

    def _snapshot(self, log=print) -> None:
        """Export, evaluate (on the selection seeds) and record the current policy, then checkpoint."""
        cfg = self.cfg
        stem = self.out / "snapshots" / f"{cfg.run_id}-{self.progress.env_steps:09d}"
        card = self.export(stem, "snapshot", cfg.snapshot_eval_episodes, cfg.eval_seed + SELECTION_SEEDS)
        ev = card["evaluation"]
        self.progress.snapshots.append({"id": card["id"], "env_steps": card["env_steps"],
                                        "return_mean": ev["return_mean"], "path": str(stem)})
        self.checkpoint()
        log(f"snapshot {card['id']}: eval return {ev['return_mean']:.1f} ± {ev['return_std']:.1f} "
            f"({ev['episodes']} episodes), training return {self.last_return:.1f}")

    def finish(self) -> dict[str, dict]:
        """Pick the expert (best snapshot) and the medium policy, re-evaluate both, return their cards.

        Snapshots are ranked on their own evaluation seeds (eval_seed + SELECTION_SEEDS...); the
        picks are then evaluated on eval_seed... so the reported return is not the selection's.
        """
        cfg = self.cfg
        if not self.progress.snapshots or self.progress.snapshots[-1]["env_steps"] < self.progress.env_steps:
            self._snapshot()
        wall, cpu = self.costs()
        pick = max(self.progress.snapshots, key=lambda s: s["return_mean"])
        # What producing the expert cost is the whole run (the later snapshots were needed to rank it).
        expert = self._promote(pick, "expert", {"env_steps": self.progress.env_steps, "wall_s": round(wall, 2),
                                                "cpu_s": round(cpu, 2), "snapshot_env_steps": pick["env_steps"]})
        cards = {"expert": expert}
        best = expert["evaluation"]["return_mean"]
        low = self.spec.random_return or 0.0
        earlier = [s for s in self.progress.snapshots if s["env_steps"] < pick["env_steps"]]
        if earlier and best > low:
            def frac(s):
                return (s["return_mean"] - low) / (best - low)

            card = self._promote(min(earlier, key=lambda s: abs(frac(s) - MEDIUM_TARGET)), "medium",
                                 {"expert": expert["id"]})
            f = (card["evaluation"]["return_mean"] - low) / (best - low)
            card["medium_fraction_of_expert"] = round(f, 3)
            card["medium_in_range"] = bool(MEDIUM_RANGE[0] <= f <= MEDIUM_RANGE[1])
            write_card(self.out / f"{cfg.run_id}-medium", card)
            cards["medium"] = card
        else:
            print(f"no medium policy: the expert's return {best:.1f} does not beat the random reference {low:.1f}"
                  if earlier else "no medium policy: no snapshot before the expert")
        self.checkpoint()
        return cards

    def _promote(self, snapshot: dict, role: str, fields: dict) -> dict:
        """Copy a snapshot to `<run_id>-<role>`, set its role and `fields`, evaluate it on eval_seed..."""
        cfg = self.cfg
        src, stem = Path(snapshot["path"]), self.out / f"{cfg.run_id}-{role}"
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(src.with_name(src.name + suffix), stem.with_name(stem.name + suffix))
        card = read_card(stem.with_name(stem.name + ".json"))
        card.pop("evaluation", None)
        card.update(id=stem.name, role=role, snapshot_of=snapshot["id"], **fields)
        write_card(stem, card)
        card["evaluation"] = evaluate(self.spec, stem, cfg.eval_episodes, cfg.eval_seed)
        write_card(stem, card)
        return card

    def stop(self) -> None:
        self.algo.stop()


def write_card(stem: Path, card: dict) -> None:
    """Rewrite the JSON card of the policy at `stem`."""
    policy_paths(stem)[1].write_text(json.dumps(card, indent=2) + "\n")


# -- CLI ---------------------------------------------------------------------------------


def _config_from_args(args) -> ExpertTrainConfig:
    from envs.registry import get_task

    try:
        get_task(args.task)
    except KeyError as e:
        raise UsageError(str(e).strip("'\"")) from None
    kw = {f.name: getattr(args, f.name) for f in fields(ExpertTrainConfig)
          if getattr(args, f.name, None) is not None and f.name != "task"}
    if "hidden" in kw:
        try:
            kw["hidden"] = tuple(int(h) for h in str(kw["hidden"]).split(","))
        except ValueError:
            raise UsageError(f"--hidden must be comma-separated integers, got {kw['hidden']!r}") from None
    try:
        return ExpertTrainConfig(task=args.task, **kw)
    except ValueError as e:
        raise UsageError(str(e)) from None


def cmd_train(args) -> int:
    cfg = _config_from_args(args)
    out = Path(cfg.out)
    if args.resume:
        if not (out / "progress.json").is_file() or not (out / "checkpoint").is_dir():
            raise UsageError(f"--resume: no checkpoint in {out} (progress.json and checkpoint/ expected)")
        saved = json.loads((out / "progress.json").read_text())["config"]
        for key in ("task", "algo", "seed", "hidden", "activation"):
            mine = list(getattr(cfg, key)) if key == "hidden" else getattr(cfg, key)
            if saved.get(key) != mine:
                raise UsageError(f"--resume: {out} was trained with {key}={saved.get(key)!r}, not {mine!r}")
    elif (out / "progress.json").exists():
        raise UsageError(f"{out} already holds a run; pass --resume to continue it or --out for a new one")
    import ray

    meter = TreeCPU()
    since = (time.time(), meter.sample(), meter)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(2, cfg.env_runners + 1), include_dashboard=False, log_to_driver=False)
    try:
        trainer = ExpertTrainer(cfg, resume=args.resume, quiet=args.quiet, since=since)
        try:
            trainer.train()
            cards = trainer.finish()
        finally:
            trainer.stop()
    finally:
        if started:
            ray.shutdown()
    for role, card in cards.items():
        ev = card["evaluation"]
        print(f"{role:7s} {card['id']}: return {ev['return_mean']:.1f} ± {ev['return_std']:.1f} "
              f"({ev['episodes']} episodes), {card['env_steps']} env steps, {card['cpu_s']:.0f} CPU-s")
        if args.zoo:
            dest = Path(args.zoo_dir)
            dest.mkdir(parents=True, exist_ok=True)
            for suffix in (".safetensors", ".json"):
                src = out / (card["id"] + suffix)
                shutil.copyfile(src, dest / src.name)
            print(f"        copied to {dest}")
    return 0


def cmd_list(args) -> int:
    try:
        cards = zoo_cards(args.zoo_dir)
    except ValueError as e:
        raise UsageError(str(e)) from None
    rows = [{"task": c["task"], "id": c["id"], "role": c.get("role"), "algorithm": c["algorithm"],
             "return_mean": c.get("evaluation", {}).get("return_mean"),
             "return_std": c.get("evaluation", {}).get("return_std"),
             "eval_episodes": c.get("evaluation", {}).get("episodes"),
             "env_steps": c.get("env_steps"), "cpu_s": c.get("cpu_s"), "gpu_s": c.get("gpu_s"),
             "path": c["path"]} for c in cards]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"expert zoo ({args.zoo_dir or ZOO_DIR})")
    for col in ("task", "id", "role", "algo", "return", "episodes", "env steps", "CPU-s"):
        table.add_column(col)
    for r in rows:
        ret = "-" if r["return_mean"] is None else f"{r['return_mean']:.1f} ± {r['return_std']:.1f}"
        table.add_row(r["task"], r["id"], str(r["role"]), r["algorithm"], ret, str(r["eval_episodes"]),
                      str(r["env_steps"]), "-" if r["cpu_s"] is None else f"{r['cpu_s']:.0f}")
    Console(width=None if sys.stdout.isatty() else 160).print(table)  # pipes get the whole table
    return 0


def cmd_eval(args) -> int:
    from envs.registry import get_task

    path = Path(args.policy)
    try:
        if not path.suffix:
            candidates = [Path(c["path"]) for c in zoo_cards(args.zoo_dir) if c["id"] == args.policy]
            path = candidates[0] if candidates else path
        card = MLPPolicy.load(path).card
        spec = get_task(card["task"])
        ev = evaluate(spec, path, args.episodes, args.seed)
    except (ValueError, KeyError) as e:
        raise UsageError(str(e)) from None
    ref = card.get("evaluation", {}).get("return_mean")
    rel = "" if not ref else f", {100 * (ev['return_mean'] - ref) / abs(ref):+.1f}% vs card {ref:.1f}"
    print(f"{card['id']}: return {ev['return_mean']:.1f} ± {ev['return_std']:.1f} "
          f"({args.episodes} episodes, seeds {args.seed}..{args.seed + args.episodes - 1}){rel}")
    if args.json:
        Path(args.json).write_text(json.dumps({"id": card["id"], "card_return_mean": ref, **ev}, indent=2))
    return 0


def medium_replay_set(run_dir: Path, zoo_dir: Path) -> dict:
    """Copy a training run's snapshots, from the first up to the first whose return reaches the zoo
    medium policy's, into `<zoo_dir>/medium-replay/<task>/` with index.json (written last, the
    directory moved into place whole); returns the index. UsageError on a run that cannot make one."""
    try:
        progress = json.loads((run_dir / "progress.json").read_text())
        task = progress["config"]["task"]
        snapshots = sorted(progress["snapshots"], key=lambda s: s["env_steps"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{run_dir}: not a finished `frontier experts train` run ({e})") from None
    try:
        medium = zoo_policy(task, "medium", zoo_dir)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if medium is None:
        raise UsageError(f"the zoo {zoo_dir} has no medium policy of {task}: its return is the set's top level")
    level = medium["evaluation"]["return_mean"]
    last = next((i for i, s in enumerate(snapshots) if s["return_mean"] >= level), None)
    if last is None:
        best = max((s["return_mean"] for s in snapshots), default=float("nan"))
        raise UsageError(f"{run_dir}: no snapshot reaches the medium policy's return {level:.1f} (best {best:.1f}); "
                         f"train longer (--resume --steps)")
    chosen = snapshots[: last + 1]
    cards = [read_card(run_dir / "snapshots" / f"{s['id']}.json") for s in chosen]
    dest = Path(zoo_dir) / REPLAY_SUBDIR / task
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for s in chosen:
        for suffix in (".safetensors", ".json"):
            shutil.copyfile(run_dir / "snapshots" / f"{s['id']}{suffix}", tmp / f"{s['id']}{suffix}")
    index = {
        "task": task,
        "rule": "the training run's snapshots from the first up to the first whose selection return "
                "(snapshot_eval_episodes on eval_seed + 500000 + j) reaches the zoo medium policy's return; "
                "an episode of env seed s is played by snapshot s mod n, actions sampled",
        "medium": medium["id"], "medium_return": level,
        "command": cards[0]["command"], "versions": cards[0]["versions"],
        # What producing the set cost: the run up to its last snapshot (snapshot evaluations included).
        "env_steps": cards[-1]["env_steps"], "wall_s": cards[-1]["wall_s"], "cpu_s": cards[-1]["cpu_s"],
        "snapshots": [{"id": s["id"], "env_steps": s["env_steps"], "return_mean": s["return_mean"]} for s in chosen],
    }
    (tmp / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return index


def cmd_medium_replay(args) -> int:
    index = medium_replay_set(Path(args.run), Path(args.zoo_dir))
    returns = [s["return_mean"] for s in index["snapshots"]]
    print(f"{index['task']}: {len(returns)} snapshots ({index['snapshots'][0]['env_steps']}.."
          f"{index['env_steps']} env steps, returns {min(returns):.1f}..{max(returns):.1f}; medium "
          f"{index['medium_return']:.1f}) -> {Path(args.zoo_dir) / REPLAY_SUBDIR / index['task']}")
    return 0


def add_parser(sub) -> None:
    """Register `frontier experts ...` on the CLI's subparsers."""
    p = sub.add_parser("experts", help="train, list and evaluate RL expert policies",
                       description="RL experts: train with RLlib, export as plain MLPs (safetensors + JSON card), "
                                   "list the committed zoo, re-evaluate exported policies.")
    esub = p.add_subparsers(dest="experts_command", required=True, metavar="SUBCOMMAND")
    d = ExpertTrainConfig(task="-")
    t = esub.add_parser("train", help="train an RL expert with RLlib and export it",
                        description="Train TASK with RLlib (new API stack), checkpoint for --resume, export snapshot "
                                    "policies along the way, the final expert and a medium policy (about 1/3-1/2 "
                                    "of the expert's return), each with an evaluated card.")
    t.add_argument("task", help="task name, e.g. Hopper-v5")
    t.add_argument("--algo", choices=ALGOS, default=None, help=f"RLlib algorithm (default {d.algo})")
    t.add_argument("--steps", type=int, help=f"env steps to train (default {d.steps})")
    t.add_argument("--seed", type=int, help=f"seed (default {d.seed})")
    t.add_argument("--out", help="run directory (default runs/experts/<task>-<algo>-s<seed>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    t.add_argument("--hidden", help=f"hidden sizes, comma-separated (default {','.join(map(str, d.hidden))})")
    t.add_argument("--activation", choices=sorted(ACTIVATIONS), help=f"hidden activation (default {d.activation})")
    t.add_argument("--lr", type=float, help=f"learning rate (default {d.lr})")
    t.add_argument("--gamma", type=float, help=f"discount (default {d.gamma})")
    t.add_argument("--batch", type=int, help=f"PPO: env steps per iteration; SAC: minibatch (default {d.batch})")
    t.add_argument("--minibatch", type=int, help=f"PPO SGD minibatch (default {d.minibatch})")
    t.add_argument("--epochs", type=int, help=f"PPO epochs per batch (default {d.epochs})")
    t.add_argument("--env-runners", type=int, help=f"remote EnvRunner actors (default {d.env_runners})")
    t.add_argument("--envs-per-runner", type=int, help=f"vectorized envs per EnvRunner (default {d.envs_per_runner})")
    t.add_argument("--snapshot-every", type=int, help="env steps between snapshots and checkpoints (default steps/10)")
    t.add_argument("--snapshot-eval-episodes", type=int,
                   help=f"evaluation episodes per snapshot (default {d.snapshot_eval_episodes})")
    t.add_argument("--eval-episodes", type=int, help=f"evaluation episodes of the final policies "
                                                      f"(default {d.eval_episodes})")
    t.add_argument("--eval-seed", type=int, help=f"first evaluation env seed (default {d.eval_seed})")
    t.add_argument("--zoo", action="store_true", help="copy the final expert and medium policy into the zoo")
    t.add_argument("--zoo-dir", default=str(ZOO_DIR), help="zoo directory for --zoo (default envs/zoo)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    ls = esub.add_parser("list", help="list the expert zoo", description="The committed zoo: task, id, role "
                                                                       "(expert/medium), algorithm, evaluation "
                                                                       "return, env steps, CPU-seconds.")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--zoo-dir", help="zoo directory (default envs/zoo)")
    ls.set_defaults(func=cmd_list)

    ev = esub.add_parser("eval", help="re-evaluate an exported policy without Ray",
                         description="Evaluate an exported policy (zoo id or .safetensors path) over fresh seeds "
                                     "and compare with its card.")
    ev.add_argument("policy", help="zoo id or path to <id>.safetensors")
    ev.add_argument("--episodes", type=int, default=20, help="episodes (default 20)")
    ev.add_argument("--seed", type=int, default=2_000_000, help="first env seed (default 2000000)")
    ev.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    ev.add_argument("--zoo-dir", help="zoo directory to look ids up in (default envs/zoo)")
    ev.set_defaults(func=cmd_eval)

    mr = esub.add_parser("medium-replay", help="make a zoo medium-replay set from a training run's snapshots",
                         description="Copy the snapshots of RUN (a `frontier experts train` directory), from the "
                                     "first up to the first that reaches the return of the zoo's medium policy of "
                                     "its task, into <zoo>/medium-replay/<task>/ with an index: the "
                                     "`rl-medium-replay` expert source plays them in turn with sampled actions, "
                                     "like D4RL's medium-replay data (the replay buffer of a run up to medium).")
    mr.add_argument("run", help="run directory of `frontier experts train`")
    mr.add_argument("--zoo-dir", default=str(ZOO_DIR), help="zoo directory (default envs/zoo)")
    mr.set_defaults(func=cmd_medium_replay)
