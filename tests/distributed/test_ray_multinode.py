"""A simulated multi-node cluster (`ray.cluster_utils.Cluster`): the learner and the replay store
on the head (custom resource `frontier_learner`), rollout actors on worker nodes
(`frontier_rollout`). Worker nodes are removed mid-run: training goes on, with the rollout actors
Ray can re-place or with none, nothing the replay store acknowledged is missing from replay/, and
actors Ray restores later are used again."""
import json
import re
import threading
import time

import pytest
import ray
import torch
from ray.cluster_utils import Cluster
from ray.exceptions import RayActorError

from frontier.distributed.ray_executor import LEARNER_RESOURCE, ROLLOUT_RESOURCE, RayExecutor
from frontier.distributed.trainer import Trainer
from frontier.distributed.replay import read_shards

# Rollout slots per worker node: one node can host all three actors of the TINY run.
SLOTS = 3


class Nodes:
    """The module's cluster and its live worker nodes (tests remove and add them)."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.workers = []

    def add(self):
        node = self.cluster.add_node(num_cpus=SLOTS, resources={ROLLOUT_RESOURCE: SLOTS})
        self.workers.append(node)
        self.cluster.wait_for_nodes()
        return node

    def remove(self, node) -> None:
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)


@pytest.fixture(scope="module")
def nodes():
    torch.set_num_threads(1)
    # Fast failure detection, so a lost node is noticed within seconds.
    system = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3}
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "resources": {LEARNER_RESOURCE: 1}, "include_dashboard": False, "_system_config": system})
    n = Nodes(c)
    n.add()
    n.add()
    ray.init(address=c.address, log_to_driver=False)
    yield n
    ray.shutdown()
    c.shutdown()


@pytest.fixture
def make_runner(nodes):
    """Trainer(cfg, run_dir, RayExecutor()); its actors are killed after the test, so a restarting actor of one
    test never takes the capacity the next test adds."""
    runners = []

    def make(cfg, run_dir):
        runners.append(Trainer(cfg, run_dir, RayExecutor(), live=False))
        return runners[-1]

    yield make
    for r in runners:
        for actor in [*r.rollouts.explorers, *r.rollouts.evaluators, r.learner, r.replay]:
            ray.kill(actor.target, no_restart=True)


def online(runner, cfg) -> bool:
    return runner.state.updates >= cfg.train.pretrain_updates + 20 and bool(runner.rollouts.explore_versions)


def wait_for(condition, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def node_of(actor) -> str:
    return ray.get(actor.target.__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id()))


def node_once_up(actor, seconds: float = 60) -> str | None:
    """The node a rollout actor runs on, once it answers (a call fails at once while Ray restarts it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return ray.get(actor.target.node_id.remote())
        except RayActorError:
            time.sleep(0.5)
    return None


def run_beside(runner, action) -> dict:
    """`runner.run()` while `action` runs in a thread (it removes nodes mid-run); the summary."""
    thread = threading.Thread(target=action)
    thread.start()
    summary = runner.run()
    thread.join()
    return summary


def lost_lines(out: str) -> list[str]:
    """Names of the rollout actors the driver reported lost, one per line it printed."""
    return re.findall(r"^rollout actor (\S+) lost\b", out, re.M)


def test_losing_a_worker_node_mid_run(nodes, make_runner, tiny_config, tmp_path):
    if len(nodes.workers) < 2:
        nodes.add()
    cfg = tiny_config("train.online_updates=300")
    runner = make_runner(cfg, tmp_path)
    removed = {}

    def remove_node_when_online():
        if wait_for(lambda: online(runner, cfg)):
            node_id = ray.get(runner.rollouts.explorers[0].target.node_id.remote())
            node = next(w for w in nodes.workers if w.node_id == node_id)
            removed["updates"] = runner.state.updates
            nodes.remove(node)
            removed["node"] = node_id

    summary = run_beside(runner, remove_node_when_online)
    assert "node" in removed, "the run ended before a node could be removed"
    # The learner and the replay store sat on the head, by their custom resource.
    assert node_of(runner.learner) == node_of(runner.replay) == nodes.cluster.head_node.node_id
    assert summary["status"] == "finished"
    # Learner (on the head) kept training after the loss: all planned updates ran.
    assert summary["learner_updates"] == cfg.train.pretrain_updates + cfg.train.online_updates > removed["updates"]
    assert summary["faults"]["actor_restarts"] >= 1
    # Ray re-placed the lost actor on the surviving node.
    assert node_once_up(runner.rollouts.explorers[0]) in {w.node_id for w in nodes.workers}
    # Every episode the store acknowledged (to the driver or to an actor that died before
    # reporting back) is in replay/, read back from disk.
    stats = ray.get(runner.replay.stats())
    on_disk = [e for _, eps, _ in read_shards(tmp_path / "replay") for e in eps]
    stored = sum(s["added_episodes"] + s["holdout_episodes"] for s in stats.values())  # held out: never trained on
    assert len(on_disk) == stored >= runner.rollouts.acknowledged_episodes
    for task in cfg.tasks:
        assert sum(e.task == task for e in on_disk) == stats[task]["added_episodes"] + stats[task]["holdout_episodes"]


def test_no_capacity_left_for_the_lost_actors(nodes, make_runner, tiny_config, tmp_path, capsys):
    if not nodes.workers:
        nodes.add()
    cfg = tiny_config("train.online_updates=300")
    runner = make_runner(cfg, tmp_path)
    removed = {}

    def remove_every_worker_when_online():
        if wait_for(lambda: online(runner, cfg)):
            removed["updates"] = runner.state.updates
            for node in list(nodes.workers):  # no rollout capacity left anywhere
                nodes.remove(node)

    summary = run_beside(runner, remove_every_worker_when_online)
    assert "updates" in removed, "the run ended before the nodes could be removed"
    assert summary["status"] == "finished"
    # No explorer left: the learner trained on the store to the end.
    assert summary["learner_updates"] == cfg.train.pretrain_updates + cfg.train.online_updates > removed["updates"]
    # The final evaluation covered every task (the driver ran the lost evaluator's share).
    final = json.loads((tmp_path / "evals.jsonl").read_text().splitlines()[-1])
    assert final["updates"] == summary["learner_updates"]
    for task in cfg.tasks:
        assert len(final["returns"][task]) == cfg.train.final_eval_episodes
        assert summary["tasks"][task]["eval_episodes"] == cfg.train.final_eval_episodes
    # One line per lost actor, however many calls failed; the evaluator's final call found it gone.
    lost = lost_lines(capsys.readouterr().out)
    assert summary["faults"]["rollout_actors_lost"] == len(lost) == len(set(lost)) >= 1, lost
    assert "eval-0" in lost
    assert {"actor_restarts", "episodes_dropped"} <= summary["faults"].keys()
    # The final checkpoint holds the count, for --resume.
    ckpt = sorted((tmp_path / "checkpoints").glob("ckpt-*"))[-1]
    assert json.loads((ckpt / "run_state.json").read_text())["rollout_actors_lost"] == len(lost)


def test_rollout_nodes_lost_while_the_actors_start(nodes, make_runner, tiny_config, tmp_path, capsys):
    # Calls sent to an actor still being created when its node goes are kept by Ray for a restart
    # that never comes (no capacity): the driver must notice, and collect and evaluate itself.
    if not nodes.workers:
        nodes.add()
    cfg = tiny_config()
    runner = make_runner(cfg, tmp_path)

    def remove_every_worker_once_the_actors_exist():
        if wait_for(lambda: runner.rollouts.evaluators):
            for node in list(nodes.workers):
                nodes.remove(node)

    summary = run_beside(runner, remove_every_worker_once_the_actors_exist)
    assert summary["status"] == "finished"
    assert summary["learner_updates"] == cfg.train.pretrain_updates + cfg.train.online_updates
    assert summary["compute"]["env_steps_by_source"]["scripted"] > 0  # expert data, whoever collected it
    for task in cfg.tasks:
        assert summary["tasks"][task]["eval_episodes"] == cfg.train.final_eval_episodes
    lost = lost_lines(capsys.readouterr().out)
    assert summary["faults"]["rollout_actors_lost"] == len(lost) == len(set(lost)) >= 1, lost


def test_restored_actors_are_used_again(nodes, make_runner, tiny_config, tmp_path, capsys):
    if not nodes.workers:
        nodes.add()
    # Planned far beyond what the test needs: it ends the run (max_wall_s) once a restored
    # explorer has collected again.
    cfg = tiny_config("train.online_updates=5000")
    runner = make_runner(cfg, tmp_path)
    ended = {}
    # The run in a thread: Ray adds a node only from the main thread.
    run = threading.Thread(target=lambda: ended.update(summary=runner.run()))
    run.start()

    def chunks_of_explorer_0():
        return sum(i == 0 for i, _ in runner.rollouts.explore_versions)

    try:
        assert wait_for(lambda: online(runner, cfg))
        for node in list(nodes.workers):
            nodes.remove(node)
        assert wait_for(lambda: not runner.rollouts.up(runner.rollouts.explorers[0]))
        nodes.add()  # capacity comes back: Ray restarts the actors there
        assert wait_for(lambda: runner.rollouts.up(runner.rollouts.explorers[0]))
        at_restore = chunks_of_explorer_0()
        assert wait_for(lambda: chunks_of_explorer_0() > at_restore)  # it explores again
    finally:
        runner.cfg.train.max_wall_s = 1e-6  # the run ends after the train call in flight
        run.join()
    summary = ended["summary"]
    assert summary["status"] == "finished"
    assert summary["faults"]["rollout_actors_lost"] >= 1
    out = capsys.readouterr().out
    assert "explore-0" in lost_lines(out)
    assert re.search(r"^rollout actor explore-0 is back\b", out, re.M)
