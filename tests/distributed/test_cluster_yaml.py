"""cluster.yaml and the on-premise example pass Ray's own cluster-launcher schema."""
import copy
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]


def _prepared(path: Path) -> dict:
    config = prepare_config(copy.deepcopy(yaml.safe_load(path.read_text())))
    validate_config(config)
    return config


def _commands(config: dict, key: str) -> str:
    return "\n".join(config.get(key, []))


@pytest.mark.parametrize("name", ["cluster.yaml", "examples/cluster-onprem.yaml"])
def test_cluster_file_validates_and_places_frontier(name):
    config = _prepared(ROOT / name)
    head = _commands(config, "head_start_ray_commands")
    worker = _commands(config, "worker_start_ray_commands")
    # The custom resources the driver places the learner and the rollouts by.
    assert "frontier_learner" in head and "frontier_rollout" in worker
    # Token authentication stays on, on every node, and the token reaches every node.
    for commands in (head, worker):
        assert "RAY_AUTH_MODE=token" in commands
        assert "disabled" not in commands
    assert "~/.ray/auth_token" in config["file_mounts"]
    setup = "\n".join(_commands(config, k) for k in ("setup_commands", "head_setup_commands", "worker_setup_commands"))
    assert "pip install" in setup and "frontier" in setup


def test_cloud_cluster_has_gpu_head_and_autoscaling_rollout_workers():
    config = _prepared(ROOT / "cluster.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("frontier_learner") == 1
    assert "g5" in head["node_config"]["InstanceType"]  # a GPU instance family
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["resources"].get("frontier_rollout", 0) > 0 for t in workers)
    assert any(t["max_workers"] > t.get("min_workers", 0) for t in workers)  # the autoscaler can add rollout nodes


def test_onprem_example_lists_machines():
    raw = yaml.safe_load((ROOT / "examples/cluster-onprem.yaml").read_text())
    assert raw["provider"]["type"] == "local"
    assert raw["provider"]["head_ip"] and len(raw["provider"]["worker_ips"]) >= 1


def test_schema_rejects_a_broken_file():
    """The validation above is not vacuous: an unknown top-level key fails it."""
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    raw["not_a_ray_key"] = 1
    with pytest.raises(Exception, match="not_a_ray_key"):
        validate_config(prepare_config(raw))
