"""summary.json written by the Monitor."""
import json

from distributed.cli import _print_summary
from distributed.monitor import Monitor


def test_a_run_stopped_before_any_evaluation_reports_null_not_zero(tmp_path, capsys):
    monitor = Monitor(tmp_path, {"CartPole-v1": (20.0, 500.0)}, live=False)
    summary = monitor.summary("failed", 0, 0, 1.0, {}, {})
    monitor.close()
    task = json.loads((tmp_path / "summary.json").read_text())["tasks"]["CartPole-v1"]
    assert task["eval_return_mean"] is None and task["normalized_score"] is None
    _print_summary(summary)
    assert "not evaluated" in capsys.readouterr().out
