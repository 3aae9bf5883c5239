"""The executor interface (distributed/executor.py): both executors provide every member of the
`Executor` protocol, the handles name only real methods of their components, the specs bind to the
components' constructors, and the trainer names no method by a string."""
import ast
import inspect
from pathlib import Path

import pytest

from frontier.distributed.executor import (Executor, Handle, LearnerHandle, LearnerSpec, ReplayHandle,
                                           RolloutHandle, RolloutSpec)
from frontier.distributed.learner_service import LearnerService
from frontier.distributed.local_executor import Call, LocalExecutor
from frontier.distributed.ray_executor import RayExecutor
from frontier.distributed.replay import ReplayStore
from frontier.distributed.rollout import RolloutService
from frontier.envs.registry import get_task

# The modules that call the components: the trainer and the rollout group.
CALLERS = [Path(__file__).resolve().parents[2] / "distributed" / name for name in ("trainer.py", "rollout_group.py")]
PROTOCOL_MEMBERS = sorted(m for m in {*Executor.__dict__, *Executor.__annotations__}
                          if not m.startswith("__") and m not in ("_is_protocol", "_is_runtime_protocol")
                          and not m.startswith("_abc"))


def kinds(fn) -> list:
    """Parameter kinds of `fn`, self included (names may differ: refs, calls)."""
    return [p.kind for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("executor", [LocalExecutor, RayExecutor])
def test_both_executors_provide_the_protocol(executor):
    assert isinstance(executor(), Executor)
    assert {"replay_store", "learner_service", "rollout_service", "local_service", "wait", "get", "cancel",
            "kill", "dead", "actor_state", "restarts", "connect", "connected", "shutdown", "remote", "LOST",
            "TASK_ERROR", "_call"} <= set(PROTOCOL_MEMBERS)
    for name in PROTOCOL_MEMBERS:
        assert hasattr(executor, name), name
        declared = getattr(Executor, name, None)
        if inspect.isfunction(declared):
            assert kinds(getattr(executor, name)) == kinds(declared), name


@pytest.mark.parametrize("handle, component", [(ReplayHandle, ReplayStore), (LearnerHandle, LearnerService),
                                               (RolloutHandle, RolloutService)])
def test_a_handle_lists_methods_of_its_component(handle, component):
    methods = [m for m, v in vars(handle).items() if inspect.isfunction(v) and not m.startswith("_")]
    assert methods
    for m in methods:
        assert inspect.isfunction(getattr(component, m, None)), f"{component.__name__} has no {m}"
        # The same arguments, in the same order (the handle's `replay` is the store's handle);
        # Ray's actor decorator adds `_ray_trace_ctx` to the methods of a class it made an actor of.
        assert list(inspect.signature(vars(handle)[m]).parameters) == [
            p for p in inspect.signature(getattr(component, m)).parameters if p != "_ray_trace_ctx"], m


def test_a_local_call_runs_the_targets_own_method_when_waited_for():
    class Base:
        def answer(self, x):
            return ("base", x)

    class Override(Base):
        def answer(self, x):
            return ("override", x)

    ex = LocalExecutor()
    call = ex._call(Override(), Base.answer, 1)
    assert isinstance(call, Call) and not call.done  # deferred until waited for
    assert ex.get(call) == ("override", 1)  # the target's override (GovernedLearner.train, say)


def test_a_replay_handle_carries_the_stores_calls_in_process():
    infos = [get_task("CartPole-v1").info()]
    ex = LocalExecutor()
    replay = ex.replay_store(infos, 1000, 0.5, 8)
    assert isinstance(replay, Handle) and isinstance(replay.target, ReplayStore)
    stats, rng = replay.stats(), replay.rng_state()
    assert ex.wait([rng, stats], num_returns=2)[0] == [rng, stats]
    assert ex.get(stats) == replay.target.stats()
    assert ex.get(rng) == replay.target.rng_state()


def test_the_specs_bind_to_the_constructors():
    def recorder(*args, **kwargs):
        return args, kwargs

    args, kwargs = LearnerSpec("model", ["info"], "learner", 3, 16, 10, True).build(recorder, "sample", "publish",
                                                                                    prefetch=0)
    bound = inspect.signature(LearnerService).bind(*args, **kwargs).arguments
    assert bound["seed"] == 3 and bound["batch_size"] == 16 and bound["weights_every"] == 10
    assert bound["frozen_trunk"] is True and bound["sample"] == "sample" and bound["publish"] == "publish"
    assert bound["prefetch"] == 0

    args, kwargs = RolloutSpec(["a", "b"], "model", "explore", 4, 7, worker_index=1).build(recorder)
    bound = inspect.signature(RolloutService).bind(*args, **kwargs).arguments
    assert bound == {"task_names": ["a", "b"], "all_task_names": ["a", "b"], "model_cfg": "model",
                     "mode": "explore", "num_envs": 4, "seed": 7, "worker_index": 1}
    args, _ = RolloutSpec(["a", "b"], "model", "eval", 2, 7, worker_index=3, tasks=["b"]).build(recorder)
    assert args[:2] == (["b"], ["a", "b"])


@pytest.mark.parametrize("path", CALLERS, ids=lambda p: p.name)
def test_the_trainer_names_no_method_by_a_string(path):
    """Every call goes through a handle's method: no `ex.call(actor, "name")` or `ex._call`, and
    `_do(call)` takes the call alone (no `_do(actor, "name")`)."""
    tree = ast.parse(path.read_text())
    offending = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        strings = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if name in ("call", "_call") or name == "_do" and (strings or len(node.args) != 1):
            offending.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not offending, offending
