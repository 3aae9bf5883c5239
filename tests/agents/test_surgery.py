"""agents.surgery: weights between models of different task lists, and a frozen trunk (no files, no Ray)."""
import copy

import pytest
import torch

from frontier.agents.model import DecisionTransformer, ModelConfig
from frontier.agents.spaces import Box, Discrete, TaskInfo
from frontier.agents.surgery import freeze_trunk, transplant

CFG = ModelConfig(embed_dim=16, n_layers=1, n_heads=2, context_len=4)
A, B, C = TaskInfo("a", Box((3,)), Box((2,))), TaskInfo("b", Box((5,)), Discrete(4)), TaskInfo("c", Box((3,)), Box((2,)))


def _model(tasks, seed):
    torch.manual_seed(seed)
    return DecisionTransformer(CFG, tasks)


def test_per_task_parameters_follow_the_task_name_and_the_trunk_its_shape():
    src, dst = _model([A, B], 0), _model([B, C], 1)
    fresh = copy.deepcopy(dst.state_dict())
    report = transplant(dst, src.state_dict(), ["a", "b"])
    torch.testing.assert_close(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)  # trunk
    torch.testing.assert_close(dst.heads["0"].weight, src.heads["1"].weight)  # b: position 1 -> 0
    torch.testing.assert_close(dst.task_embed.weight[0], src.task_embed.weight[1])
    torch.testing.assert_close(dst.log_temperature[0], src.log_temperature[1])
    torch.testing.assert_close(dst.heads["1"].weight, fresh["heads.1.weight"])  # c: not in the source
    assert "heads.0.weight" in report["skipped"]  # a has no place here
    # Renamed: a's modules start c, which has a's spaces.
    transplant(dst, src.state_dict(), ["a", "b"], {"a": "c"})
    torch.testing.assert_close(dst.heads["1"].weight, src.heads["0"].weight)
    with pytest.raises(ValueError, match="'z', which the other model was not trained on"):
        transplant(dst, src.state_dict(), ["a", "b"], {"z": "c"})


def test_freeze_trunk_leaves_exactly_the_models_per_task_parameters_trainable():
    model = _model([A, B], 0)
    trainable = freeze_trunk(model)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.split(".")[0] in model.PER_TASK_MODULES or n in model.PER_TASK_ROWS for n in names)
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad) < model.num_parameters()
