"""A zoo medium-replay set: a training run's snapshots up to the medium level (`frontier experts medium-replay`)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from frontier.envs.experts.rl import REPLAY_SUBDIR, read_card, zoo_policy


def medium_replay_set(run_dir: Path, zoo_dir: Path) -> dict:
    """Copy a training run's snapshots, from the first up to the first whose return reaches the zoo
    medium policy's, into `<zoo_dir>/medium-replay/<task>/` with index.json (written last, the
    directory moved into place whole); returns the index. ValueError naming the problem on a run that cannot make one."""
    try:
        progress = json.loads((run_dir / "progress.json").read_text())
        task = progress["config"]["task"]
        snapshots = sorted(progress["snapshots"], key=lambda s: s["env_steps"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{run_dir}: not a finished `frontier experts train` run ({e})") from None
    medium = zoo_policy(task, "medium", zoo_dir)
    if medium is None:
        raise ValueError(f"the zoo {zoo_dir} has no medium policy of {task}: its return is the set's top level")
    level = medium["evaluation"]["return_mean"]
    last = next((i for i, s in enumerate(snapshots) if s["return_mean"] >= level), None)
    if last is None:
        best = max((s["return_mean"] for s in snapshots), default=float("nan"))
        raise ValueError(f"{run_dir}: no snapshot reaches the medium policy's return {level:.1f} (best {best:.1f}); "
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
