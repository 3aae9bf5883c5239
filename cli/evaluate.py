"""`frontier eval`: deterministic evaluation episodes with a run's final model (or latest checkpoint)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from frontier.distributed.errors import UsageError


def last_eval_targets(run_dir: Path) -> dict[str, float]:
    """{task: return target} of the last evaluation in `run_dir`/evals.jsonl ({} if none is recorded)."""
    path = run_dir / "evals.jsonl"
    if not path.is_file():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        return dict(json.loads(lines[-1]).get("targets") or {}) if lines else {}
    except json.JSONDecodeError:
        return {}


def chosen_weights(run_dir: Path, checkpoint: int | None, raw: bool) -> Path:
    """The weights file to evaluate: the run's final model.safetensors (or, without one, its
    newest intact checkpoint's), checkpoint ckpt-<N> with `checkpoint`, and with `raw` that
    checkpoint's learner_state.pt (the raw parameters where the policy is their moving average)."""
    from frontier.distributed.run_files import checkpoint_problem, latest_checkpoint

    final = run_dir / "model.safetensors"
    if checkpoint is None and not raw and final.is_file():
        return final
    if checkpoint is None:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise UsageError(f"{run_dir}: no model.safetensors and no checkpoint to evaluate")
    else:
        ckpt = run_dir / "checkpoints" / f"ckpt-{checkpoint:08d}"
        if not ckpt.is_dir():
            have = sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("ckpt-*"))
            raise UsageError(f"{run_dir}: no checkpoint at {checkpoint} updates (checkpoints at: "
                             f"{', '.join(map(str, have)) or 'none'})")
        why = checkpoint_problem(ckpt)
        if why is not None:
            raise UsageError(f"{ckpt}: not intact ({why})")
    if raw:
        import torch

        state = torch.load(ckpt / "learner_state.pt", map_location="cpu", weights_only=True)
        if "train_model" not in state:
            raise UsageError(f"{ckpt}: its policy is the raw weights (no moving average, learner.ema_decay 0): "
                             "evaluate it without --raw-weights")
        return ckpt / "learner_state.pt"
    return ckpt / "model.safetensors"


def raw_weights(path: Path) -> dict:
    """The raw parameters (and buffers) a checkpoint's learner_state.pt holds beside the average."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["train_model"]


def cmd_eval(args) -> int:
    from frontier.distributed import config as config_mod

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"{run_dir}: not a run directory (no config.yaml)")
    weights = chosen_weights(run_dir, args.checkpoint, args.raw_weights)
    try:
        cfg = config_mod.load(run_dir / "config.yaml")
    except ValueError as e:
        raise UsageError(str(e))
    tasks = args.tasks or cfg.tasks
    unknown = [t for t in tasks if t not in cfg.tasks]
    if unknown:
        raise UsageError(f"task {unknown[0]!r} is not one the run trained on ({', '.join(cfg.tasks)})")
    if args.episodes <= 0:
        raise UsageError(f"--episodes must be > 0, got {args.episodes}")

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from frontier.distributed.monitor import normalized_score
    from frontier.distributed.rollout import RolloutWorker
    from frontier.envs.references import reference_returns
    from frontier.envs.registry import get_task

    try:
        state = load_file(str(weights)) if weights.suffix == ".safetensors" else raw_weights(weights)
    except (SafetensorError, OSError, RuntimeError, KeyError) as e:
        raise UsageError(f"cannot read weights {weights}: {e}")
    print(f"weights: {weights}{' (raw, not the moving average)' if weights.suffix != '.safetensors' else ''}")
    worker = RolloutWorker(tasks, cfg.tasks, cfg.model, "eval", max(len(tasks), cfg.rollout.envs_per_worker),
                           args.seed, 0)
    worker.set_weights(0, state)
    import numpy as np

    refs = {t: reference_returns(get_task(t), cache=run_dir / "references.json") for t in tasks}

    def evaluate() -> dict[str, dict]:
        returns: dict[str, list[float]] = {}
        successes: dict[str, list[bool]] = {}
        for ep in worker.evaluate(args.episodes):
            returns.setdefault(ep.task, []).append(ep.ret)
            if ep.success is not None:
                successes.setdefault(ep.task, []).append(ep.success)
        return {t: {"return_mean": float(np.mean(returns[t])), "return_std": float(np.std(returns[t])),
                    "episodes": len(returns[t]), "normalized_score": normalized_score(float(np.mean(returns[t])), *refs[t]),
                    "success_rate": float(np.mean(successes[t])) if t in successes else None}
                for t in tasks}

    def success(r: dict) -> str:
        return "" if r["success_rate"] is None else f"  success {r['success_rate']:.2f}"

    if args.target:  # a sweep: one evaluation per return target, every task conditioned on it
        out = {t: [] for t in tasks}
        for target in args.target:
            worker.set_targets({t: target for t in tasks})
            for t, r in evaluate().items():
                out[t].append({"target": target, **r})
                print(f"{t:28s} target {target:9.1f}  return {r['return_mean']:9.1f} ± {r['return_std']:7.1f}  "
                      f"normalized {r['normalized_score']:.2f}{success(r)}  ({r['episodes']} episodes, seed {args.seed})")
    else:
        # Condition on the return targets of the run's last evaluation (data-relative targets depend
        # on its replay store); runs written before evals.jsonl recorded them use the tasks' own.
        targets = last_eval_targets(run_dir)
        if targets:
            worker.set_targets({t: targets[t] for t in tasks if t in targets})
            print("return targets of the run's last evaluation: "
                  + ", ".join(f"{t} {'predicted per episode' if targets[t] is None else f'{targets[t]:.1f}'}"
                              for t in tasks if t in targets))
        out = evaluate()
        for t, r in out.items():
            print(f"{t:28s} return {r['return_mean']:9.1f} ± {r['return_std']:7.1f}  "
                  f"normalized {r['normalized_score']:.2f}{success(r)}  ({r['episodes']} episodes, seed {args.seed})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


def add_parser(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate a trained run's model",
                        description="Run deterministic evaluation episodes with a run's final model (or latest "
                                    "checkpoint) and print returns and normalized scores.",
                        epilog="examples:\n"
                               "  frontier eval runs/quick                        # the final model, 20 episodes per task\n"
                               "  frontier eval runs/quick --checkpoint 3000      # the policy at 3,000 updates\n"
                               "  frontier eval runs/mt10 --raw-weights --tasks Meta-World/push-v3\n"
                               "  frontier eval runs/quick --target 200 500 --tasks CartPole-v1   # does it follow its target?",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("run_dir", help="a run directory written by 'frontier train'")
    ev.add_argument("--episodes", type=int, default=20, help="episodes per task (default 20)")
    ev.add_argument("--tasks", nargs="+", help="evaluate only these tasks of the run")
    ev.add_argument("--seed", type=int, default=12345, help="environment seed base (default 12345)")
    ev.add_argument("--target", type=float, nargs="+", metavar="RETURN",
                    help="condition every evaluated task on this return instead of the run's last evaluation "
                         "targets; several values evaluate once per value (does the model follow its target?), "
                         "and --json then holds a list per task")
    ev.add_argument("--checkpoint", type=int, metavar="UPDATES",
                    help="evaluate the checkpoint taken at this many updates (checkpoints/ckpt-<UPDATES>)")
    ev.add_argument("--raw-weights", action="store_true",
                    help="evaluate the raw parameters instead of their moving average (learner.ema_decay > 0), "
                         "from the chosen checkpoint or the newest one")
    ev.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ev.set_defaults(func=cmd_eval)
