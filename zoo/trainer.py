"""ExpertTrainer: one RLlib Algorithm trained, checkpointed, snapshotted and exported with evaluated cards."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from frontier.agents.spaces import Discrete
from frontier.envs.experts.rl import RLExpert, policy_paths, read_card, save_policy
from frontier.zoo.config import MEDIUM_RANGE, MEDIUM_TARGET, SELECTION_SEEDS, ExpertTrainConfig
from frontier.zoo.meter import TreeCPU, library_versions
from frontier.zoo.rllib import algo_config, export_net, mean_std_state, register


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
        from frontier.envs.registry import get_task

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
