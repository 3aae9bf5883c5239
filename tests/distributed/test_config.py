"""Config loading: every key and value checked, overrides applied, one clear error."""
from pathlib import Path

import pytest

from frontier.distributed import config


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = config.load(write(tmp_path, "tasks: [CartPole-v1]\ntrain: {batch_size: 32}\n"),
                      ["train.batch_size=64", "model.embed_dim=64", "replay.task_weights={CartPole-v1: 2}"])
    assert cfg.train.batch_size == 64
    assert cfg.model.embed_dim == 64
    assert cfg.replay.task_weights == {"CartPole-v1": 2.0}
    assert isinstance(cfg.learner.lr, float)


def test_round_trip(tmp_path):
    cfg = config.load(write(tmp_path, "tasks: [CartPole-v1, Pendulum-v1]\nseed: 3\n"))
    config.save(cfg, tmp_path / "out.yaml")
    assert config.load(tmp_path / "out.yaml") == cfg


@pytest.mark.parametrize("text, overrides, needle", [
    ("tasks: [CartPole-v1]\ntrain: {batchsize: 3}\n", [], "did you mean 'train.batch_size'"),
    ("tasks: [CartPole-v1]\n", ["train.batch_size=abc"], "train.batch_size"),
    ("tasks: [CartPole-v1]\n", ["train.batch_size=0"], "train.batch_size"),
    ("tasks: [CartPole-v1]\n", ["learner.bf16=7"], "learner.bf16"),
    ("tasks: CartPole-v1\n", [], "tasks"),
    ("tasks: []\n", [], "tasks"),
    ("tasks: [CartPole-v1]\nreplay: {offline_share: 1.5}\n", [], "replay.offline_share"),
    ("tasks: [CartPole-v1]\nmodel: {embed_dim: 30, n_heads: 4}\n", [], "model': embed_dim 30"),
    ("tasks: [CartPole-v1]\n", ["nosuchkey"], "key=value"),
    ("tasks: [CartPole-v1]\n", ["replay.task_sampling=loss"], "replay.task_sampling"),
    ("tasks: [CartPole-v1]\n", ["replay.task_sampling=val_nll", "replay.holdout_share=0"], "replay.holdout_share"),
    ("tasks: [CartPole-v1]\nreplay: {task_sampling: val_nll, task_weights: {CartPole-v1: 2}}\n", [],
     "replay.task_weights"),
    ("tasks: [CartPole-v1]\n", ["bogus.section=1"], "bogus"),
])
def test_bad_values_name_the_key(tmp_path, text, overrides, needle):
    with pytest.raises(ValueError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        config.load(write(tmp_path, text), overrides)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        config.load(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="not valid YAML"):
        config.load(write(tmp_path, "tasks: [a\n"))


def test_yaml_errors_give_line_and_column(tmp_path):
    path = write(tmp_path, "tasks: [CartPole-v1]\ntrain:\n  batch_size: 64\n   pretrain_updates: 5\n")
    with pytest.raises(ValueError, match=r"c.yaml:4:\d+: not valid YAML"):
        config.load(path)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_config_file_is_an_error_not_every_default(tmp_path, text):
    with pytest.raises(ValueError, match="is empty"):
        config.load(write(tmp_path, text))


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
                         + sorted((Path(__file__).resolve().parents[2] / "configs" / "bench").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_committed_run_configs_load_with_known_tasks_and_sources(path):
    from frontier.envs.registry import get_task

    cfg = config.load(path)
    for task in cfg.tasks:
        spec = get_task(task)
        kind = cfg.experts.sources.get(task, cfg.experts.source)
        assert kind.startswith("dataset:") or kind in spec.experts, (task, kind)


def test_a_config_built_in_code_is_checked_too():
    from frontier.distributed.config import ReplayConfig, RolloutConfig, RunConfig, TrainConfig

    with pytest.raises(ValueError, match="config key 'train.batch_size' must be > 0, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="config key 'train.return_targets' must be one of"):
        TrainConfig(return_targets="best")
    with pytest.raises(ValueError, match="config key 'replay.offline_share' must be in"):
        ReplayConfig(offline_share=2.0)
    with pytest.raises(ValueError, match="config key 'rollout.call_timeout_s' must be >= 0"):
        RolloutConfig(call_timeout_s=-1)
    with pytest.raises(ValueError, match="config key 'experts.sources.Hopper-v5': task not in 'tasks'"):
        RunConfig(tasks=["CartPole-v1"], experts=config.ExpertConfig(sources={"Hopper-v5": "rl"}))
    with pytest.raises(ValueError, match="config key 'tasks' lists a task twice"):
        RunConfig(tasks=["CartPole-v1", "CartPole-v1"])


def test_overrides_leave_the_given_mapping_as_it_was():
    data = {"tasks": ["CartPole-v1"], "train": {"online_updates": 50}}
    cfg = config.from_dict(data, ["train.online_updates=100", "train.batch_size=8"])
    assert cfg.train.online_updates == 100 and cfg.train.batch_size == 8
    assert data == {"tasks": ["CartPole-v1"], "train": {"online_updates": 50}}


def test_the_configuration_reference_is_current():
    """docs/config.md is `config_reference.reference()` (regenerate it with `make docs`), and every key has a docstring."""
    from pathlib import Path

    from frontier.distributed.config_reference import reference

    text = reference()
    assert (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text() == text, "run `make docs`"
    undocumented = [line.split("|")[1].strip() for line in text.splitlines()
                    if line.startswith("| `") and line.rstrip().endswith("|  |")]
    assert not undocumented, undocumented
    assert "| `replay.task_sampling` | `fixed` |" in text and "| `train.batch_size` | `128` |" in text
