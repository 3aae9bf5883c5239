"""Moving weights between models of different task lists: initializing one model from another,
and freezing the shared trunk. Per-task parameters are the model's own lists
(`DecisionTransformer.PER_TASK_MODULES`, `.PER_TASK_ROWS`), matched by task NAME.

    report = transplant(model, other_state, other_tasks, {"HalfCheetah-v5": "Walker2d-v5"})
    freeze_trunk(model)   # train only the per-task parameters from now on
"""
from __future__ import annotations

import torch

from frontier.agents.model import DecisionTransformer


def transplant(model: DecisionTransformer, state: dict[str, torch.Tensor], their_tasks: list[str],
               task_map: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Copy another model's `state` (trained on `their_tasks`, in order) into `model` where it fits.

    Per-task modules and rows go to the task of the same name, after renaming the other model's
    tasks by `task_map`; its tasks that `model` lacks are skipped. Every other tensor (the shared
    trunk) is copied when its shape matches. Returns {"loaded": [...], "skipped": [...]} (this
    model's / the other model's keys). ValueError if `task_map` names a task they lack.
    """
    task_map = task_map or {}
    unknown = [t for t in task_map if t not in their_tasks]
    if unknown:
        raise ValueError(f"task map names {unknown[0]!r}, which the other model was not trained on")
    ours = {t.name: i for i, t in enumerate(model.tasks)}
    # their position -> our position, for the tasks both have (after renaming)
    index = {i: ours[task_map.get(t, t)] for i, t in enumerate(their_tasks) if task_map.get(t, t) in ours}
    mine = model.state_dict()
    loaded, skipped = [], []
    with torch.no_grad():
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in model.PER_TASK_MODULES:
                pos, _, leaf = rest.partition(".")
                target = f"{head}.{index[int(pos)]}.{leaf}" if int(pos) in index else None
                if target is None or target not in mine or mine[target].shape != value.shape:
                    skipped.append(key)
                    continue
                mine[target].copy_(value)
                loaded.append(target)
            elif key in model.PER_TASK_ROWS:
                for theirs, ours_i in index.items():
                    mine[key][ours_i].copy_(value[theirs])
                loaded.append(key)
            elif key in mine and mine[key].shape == value.shape:
                mine[key].copy_(value)
                loaded.append(key)
            else:
                skipped.append(key)
    return {"loaded": loaded, "skipped": skipped}


def freeze_trunk(model: DecisionTransformer) -> int:
    """Stop gradients to everything but the per-task parameters; returns how many stay trainable."""
    trainable = 0
    for name, p in model.named_parameters():
        per_task = name.split(".")[0] in model.PER_TASK_MODULES or name in model.PER_TASK_ROWS
        p.requires_grad_(per_task)
        trainable += p.numel() if per_task else 0
    return trainable
