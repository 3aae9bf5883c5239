"""LearnerService without Ray: sampling and publishing are the functions it is given."""
import numpy as np

from frontier.distributed.learner_service import LearnerService
from frontier.distributed.replay import ReplayStore
from frontier.distributed.rollout import collect_expert
from frontier.envs.registry import get_task


def test_learner_service_runs_in_process_on_a_local_store(tiny_config):
    cfg = tiny_config()
    infos = [get_task(t).info() for t in cfg.tasks]
    store = ReplayStore(infos, 10_000, 0.5, cfg.model.context_len)
    for task in cfg.tasks:
        store.add(collect_expert(task, "scripted", 2, 0)[0], offline=True)
    published = []

    def publish(weights):
        published.append(weights)
        return len(published)  # the handle rollout workers would get

    service = LearnerService(cfg.model, infos, cfg.learner, 0, store.sample, publish, batch_size=8, weights_every=5)
    try:
        out = service.train(12)
    finally:
        service.stop()
    assert out["updates"] == 12 and out["trained_timesteps"] > 0 and np.isfinite(out["metrics"]["loss/total"])
    assert out["weights"] == (10, [len(published)])  # published at 5 and 10, the handle of the last
    assert len(published) == 2 and published[-1].keys() == service.learner.weights().keys()
