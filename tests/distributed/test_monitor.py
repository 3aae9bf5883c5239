"""summary.json written by the Monitor."""
import json

from frontier.cli.train import _print_summary
from frontier.distributed.monitor import Monitor


def test_a_run_stopped_before_any_evaluation_reports_null_not_zero(tmp_path, capsys):
    monitor = Monitor(tmp_path, {"CartPole-v1": (20.0, 500.0)}, live=False)
    summary = monitor.summary("failed", 0, 0, 1.0, {}, {})
    monitor.close()
    task = json.loads((tmp_path / "summary.json").read_text())["tasks"]["CartPole-v1"]
    assert task["eval_return_mean"] is None and task["normalized_score"] is None
    _print_summary(summary)
    assert "not evaluated" in capsys.readouterr().out


def test_json_files_are_standard_json_with_nan_as_null(tmp_path):
    from frontier.distributed.monitor import write_json_atomic

    write_json_atomic(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2}})
    text = (tmp_path / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": 2}}


def test_stop_reasons_are_one_line_without_colour_codes():
    from frontier.distributed.run_files import one_line_error

    class RemoteError(Exception):  # how a RayTaskError carries what the actor raised
        def __init__(self, cause):
            super().__init__("\x1b[36mray::Actor.call()\x1b[39m\nTraceback (most recent call last):\n  File x\nboom")
            self.cause = cause

    assert one_line_error(RemoteError(RuntimeError("env broke"))) == "RuntimeError: env broke"
    assert one_line_error(ValueError("\x1b[31mbad\x1b[0m\nvalue")) == "ValueError: value"
