"""run.log: the copy of what the terminal shows."""
import logging
import subprocess
import sys
import textwrap

import pytest

from frontier.distributed import run_log
from frontier.distributed.errors import UsageError


def test_capture_copies_stdout_and_stderr_without_escape_codes(tmp_path, capsys):
    path = tmp_path / "run.log"
    with run_log.capture(path):
        print("to stdout")
        print("\x1b[1mbold\x1b[0m to stderr", file=sys.stderr)
    print("after the capture")
    out, err = capsys.readouterr()
    assert out == "to stdout\nafter the capture\n" and "\x1b[1mbold" in err  # the terminal unchanged
    assert path.read_text() == "to stdout\nbold to stderr\n"


def test_a_handler_made_during_the_capture_still_writes_after_it(tmp_path, capsys):
    path = tmp_path / "run.log"
    log = logging.getLogger("frontier-test-run-log")
    with run_log.capture(path):
        handler = logging.StreamHandler()  # holds the capture's stderr
        log.addHandler(handler)
        log.warning("during")
    try:
        log.warning("after")  # no error on a closed file; the terminal gets it, run.log does not
    finally:
        log.removeHandler(handler)
    assert path.read_text() == "during\n"
    assert capsys.readouterr().err == "during\nafter\n"


def test_an_error_is_in_the_log(tmp_path):
    path = tmp_path / "run.log"
    with pytest.raises(UsageError), run_log.capture(path):
        raise UsageError("a bad setting")
    with pytest.raises(ZeroDivisionError), run_log.capture(path):
        1 / 0
    text = path.read_text()
    assert text.startswith("error: a bad setting\nTraceback") and "ZeroDivisionError" in text


def test_lines_ray_forwards_from_a_worker_are_in_the_log(tmp_path):
    """Ray prints a worker's output on the driver (log_to_driver, its default); run.log gets it."""
    script = textwrap.dedent(f"""
        import os, time
        os.environ["RAY_AUTH_MODE"] = "disabled"
        from pathlib import Path
        import ray
        from frontier.distributed import run_log

        path = Path({str(tmp_path / "run.log")!r})
        with run_log.capture(path):
            ray.init(num_cpus=1, include_dashboard=False)

            @ray.remote
            def work():
                print("a line from the worker")
                raise ValueError("the worker failed")

            try:
                ray.get(work.remote())
            except ray.exceptions.RayTaskError:
                pass
            for _ in range(300):  # forwarding is asynchronous
                if "a line from the worker" in path.read_text():
                    break
                time.sleep(0.1)
            ray.shutdown()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "run.log").read_text()
    assert "(work pid=" in text and "a line from the worker" in text
