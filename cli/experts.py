"""`frontier experts train|list|eval|medium-replay`: parse and check, then the runtime of
zoo/ (RLlib training and export) or envs/experts/rl.py (exported policies)."""
from __future__ import annotations

import argparse

import json
import shutil
import sys
import time
from dataclasses import fields
from pathlib import Path

from frontier.distributed.errors import UsageError
from frontier.envs.experts.rl import ACTIVATIONS, REPLAY_SUBDIR, ZOO_DIR, MLPPolicy, zoo_cards
from frontier.zoo.config import ALGOS, ExpertTrainConfig
from frontier.zoo.meter import TreeCPU
from frontier.zoo.replay_set import medium_replay_set
from frontier.zoo.trainer import ExpertTrainer, evaluate


def _config_from_args(args) -> ExpertTrainConfig:
    from frontier.envs.registry import get_task

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
    from frontier.envs.registry import get_task

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


def cmd_medium_replay(args) -> int:
    try:
        index = medium_replay_set(Path(args.run), Path(args.zoo_dir))
    except ValueError as e:
        raise UsageError(str(e)) from None
    returns = [s["return_mean"] for s in index["snapshots"]]
    print(f"{index['task']}: {len(returns)} snapshots ({index['snapshots'][0]['env_steps']}.."
          f"{index['env_steps']} env steps, returns {min(returns):.1f}..{max(returns):.1f}; medium "
          f"{index['medium_return']:.1f}) -> {Path(args.zoo_dir) / REPLAY_SUBDIR / index['task']}")
    return 0


def add_parser(sub) -> None:
    """Register `frontier experts ...` on the CLI's subparsers."""
    p = sub.add_parser("experts", help="train, list and evaluate RL expert policies",
                       description="RL experts: train with RLlib, export as plain MLPs (safetensors + JSON card), "
                                   "list the committed zoo, re-evaluate exported policies.",
        epilog="examples:\n  frontier experts list\n  frontier experts train InvertedPendulum-v5 --algo ppo --steps 60000",
        formatter_class=argparse.RawDescriptionHelpFormatter)
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
