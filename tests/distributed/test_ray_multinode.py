"""A simulated multi-node cluster (`ray.cluster_utils.Cluster`): the learner and the replay store
on the head (custom resource `frontier_learner`), rollout actors on two worker nodes
(`frontier_rollout`). A worker node is removed mid-run; training goes on and nothing the
replay store acknowledged is missing from replay/."""
import threading
import time

import pytest
import ray
import torch
from ray.cluster_utils import Cluster

from distributed.ray_driver import LEARNER_RESOURCE, ROLLOUT_RESOURCE, RayRunner
from distributed.replay import read_shards


@pytest.fixture(scope="module")
def cluster():
    torch.set_num_threads(1)
    # Fast failure detection, so a lost node is noticed within seconds.
    system = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3}
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {LEARNER_RESOURCE: 1}, "include_dashboard": False, "_system_config": system})
    # Three rollout slots per worker node: after losing one node the other can host all three actors.
    workers = [c.add_node(num_cpus=3, resources={ROLLOUT_RESOURCE: 3}) for _ in range(2)]
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    yield c, workers
    ray.shutdown()
    c.shutdown()


def test_losing_a_worker_node_mid_run(cluster, tiny_config, tmp_path):
    c, workers = cluster
    cfg = tiny_config("train.online_updates=300")
    runner = RayRunner(cfg, tmp_path, live=False)
    removed = {}

    def remove_node_when_online():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if runner.state.updates >= cfg.train.pretrain_updates + 20 and runner.explore_versions:
                node_id = ray.get(runner.explorers[0].node_id.remote())
                node = next(w for w in workers if w.node_id == node_id)
                removed["updates"] = runner.state.updates
                c.remove_node(node, allow_graceful=False)
                removed["node"] = node_id
                return
            time.sleep(0.05)

    remover = threading.Thread(target=remove_node_when_online)
    remover.start()
    summary = runner.run()
    remover.join()
    assert "node" in removed, "the run ended before a node could be removed"
    # The learner and the replay store sat on the head, by their custom resource.
    where = lambda actor: ray.get(actor.__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id()))  # noqa: E731
    assert where(runner.learner) == where(runner.replay) == c.head_node.node_id
    assert summary["status"] == "finished"
    # Learner (on the head) kept training after the loss: all planned updates ran.
    assert summary["learner_updates"] == cfg.train.pretrain_updates + cfg.train.online_updates > removed["updates"]
    assert summary["faults"]["actor_restarts"] >= 1
    # Rollouts went on after the loss, on the surviving node.
    survivor = next(w.node_id for w in workers if w.node_id != removed["node"])
    assert ray.get(runner.explorers[0].node_id.remote()) == survivor
    # Every episode the store acknowledged (to the driver or to an actor that died before
    # reporting back) is in replay/, read back from disk.
    stats = ray.get(runner.replay.stats.remote())
    on_disk = [e for _, eps, _ in read_shards(tmp_path / "replay") for e in eps]
    assert len(on_disk) == sum(s["added_episodes"] for s in stats.values()) >= runner.acknowledged_episodes
    for task in cfg.tasks:
        assert sum(e.task == task for e in on_disk) == stats[task]["added_episodes"]
