"""The CLI rejects bad input with one clear line and a non-zero exit, before any work starts."""
import json
import subprocess
import sys
import pytest

from frontier.cli import main


def run_cli(*args):
    # The timeout guards against a hang: `tasks` builds every env (about 70 s on 2 idle cores).
    return subprocess.run([sys.executable, "-m", "frontier.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def cfg_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("tasks: [CartPole-v1]\n")
    return p


def test_version(capsys):
    from frontier import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"frontier {__version__}"


def test_print_config_prints_every_setting_and_writes_nothing(cfg_file, tmp_path, capsys):
    import yaml

    from frontier.distributed import config

    out = tmp_path / "run"
    assert main(["train", str(cfg_file), "--set", "seed=7", "--out", str(out), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == config.to_dict(config.load(cfg_file, ["seed=7"])) and printed["train"]["batch_size"] == 128
    assert not out.exists()


@pytest.mark.parametrize("args, needle", [
    (["train", "{dir}/missing.yaml", "--serial", "--out", "{dir}/run"], "config file not found"),
    (["train", "{cfg}", "--serial", "--out", "{dir}/run", "--set", "tasks=[NoSuchTask-v0]"], "unknown task 'NoSuchTask-v0'"),
    (["train", "{cfg}", "--serial", "--out", "{dir}/run", "--set", "train.batchsize=3"],
     "unknown config key 'train.batchsize'"),
    (["train", "{cfg}", "--serial", "--out", "{dir}/run", "--set", "train.batch_size=-1"], "'train.batch_size' must be > 0"),
    (["train", "{cfg}", "--serial", "--out", "{dir}/run", "--set", "seed=abc"], "'seed' must be int"),
    (["train", "{cfg}", "--serial", "--out", "{dir}/run", "--set", "experts.source=bogus"],
     "experts for CartPole-v1: task 'CartPole-v1' has no expert of kind 'bogus'"),
    (["train", "{cfg}", "--serial", "--out", "{dir}/run", "--set", "experts.source=dataset:{dir}/no-such-data"],
     "experts for CartPole-v1:"),
    (["train", "--resume", "{dir}"], "not a run directory"),
    (["train", "{cfg}", "--serial", "--out", "{dir}/run", "--strict"], "--strict applies to --resume"),
    (["train", "{cfg}", "--serial", "--out", "{dir}/run", "--set", "tasks=[Cartpole-v1]"],
     "unknown task 'Cartpole-v1' (did you mean 'CartPole-v1'?"),
    (["eval", "{dir}"], "not a run directory"),
])
def test_bad_input_one_line(cfg_file, tmp_path, capsys, args, needle):
    code = main([a.format(cfg=cfg_file, dir=tmp_path) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert needle in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_help_and_tasks_json():
    r = run_cli("--help")
    assert r.returncode == 0 and "train" in r.stdout and "tasks" in r.stdout
    r = run_cli("train", "--help")
    assert r.returncode == 0 and "--resume" in r.stdout and "--serial" in r.stdout
    r = run_cli("tasks", "--json")
    assert r.returncode == 0, r.stderr
    names = {t["name"] for t in json.loads(r.stdout)["tasks"]}
    assert {"CartPole-v1", "InvertedPendulum-v5", "ALE/Pong-ram-v5"} <= names


def test_non_finite_reference_return_is_one_line_and_leaves_no_run_directory(cfg_file, tmp_path, capsys, monkeypatch):
    import dataclasses

    import numpy as np

    from frontier.envs import references, registry

    spec = dataclasses.replace(registry.get_task("CartPole-v1"), random_return=None)  # to be measured
    monkeypatch.setitem(registry.all_tasks(), "CartPole-v1", spec)
    monkeypatch.setattr(references, "random_returns", lambda *a: np.array([np.nan]))  # an env returning NaN
    code = main(["train", str(cfg_file), "--serial", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "random reference return is nan" in err[-1]
    assert not (tmp_path / "run").exists()


def test_run_log_holds_what_the_terminal_showed(tmp_path, capsys):
    import yaml

    from tests.conftest import TINY

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    run_dir = tmp_path / "run"
    assert main(["train", str(cfg), "--serial", "--out", str(run_dir)]) == 0
    out, err = capsys.readouterr()
    log = (run_dir / "run.log").read_text()
    assert f"run directory: {run_dir}" in log and "status finished" in log
    for line in (out + err).splitlines():  # every line the terminal got
        assert line in log
