"""run.log: a copy of what `frontier train` shows on the terminal, kept in the run directory.

`capture(path)` copies everything written to `sys.stdout` and `sys.stderr` (the run's messages,
warnings, tracebacks, and the lines Ray forwards from its workers, "(RolloutWorker pid=...) ...")
into the file, escape codes removed. The live view's redraws go to the terminal only (the monitor
writes its progress line into the file itself); while it shows, text is printed above it.
"""
from __future__ import annotations

import re
import sys
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.file_proxy import FileProxy

from .errors import UsageError

_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\r")


class _Tee:
    """A text stream that writes to the terminal and to the log."""

    def __init__(self, terminal, log, lock: threading.Lock):
        self.terminal = terminal  # the stream this one replaced
        self.shown = terminal  # what shows the text: the terminal, or the live view's proxy
        self._log, self._lock = log, lock

    def write(self, text: str) -> int:
        with self._lock:  # Ray forwards worker lines from its own thread
            self.shown.write(text)
            if self._log is not None:
                self._log.write(_ESCAPES.sub("", text))
                self._log.flush()
        return len(text)

    def detach(self) -> None:
        """Stop copying: a logging handler made during the capture keeps this stream after it."""
        with self._lock:
            self._log = None

    def flush(self) -> None:
        self.shown.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, ... of the terminal
        return getattr(self.terminal, name)


def terminal(stream):
    """The terminal stream under `stream` (itself where nothing is captured)."""
    return stream.terminal if isinstance(stream, _Tee) else stream


def capturing() -> bool:
    return isinstance(sys.stderr, _Tee)


def show_above(console: Console | None) -> None:
    """Print captured text through `console`, above its live view; None: straight to the terminal again."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, _Tee):
            stream.shown.flush()
            stream.shown = FileProxy(console, stream.terminal) if console is not None else stream.terminal


@contextmanager
def capture(path: Path):
    """Copy stdout and stderr into `path` (appended) while the block runs; an exception's traceback too."""
    with open(path, "a", encoding="utf-8") as log:
        lock = threading.Lock()
        out, err = sys.stdout, sys.stderr
        tees = _Tee(out, log, lock), _Tee(err, log, lock)
        sys.stdout, sys.stderr = tees
        try:
            yield
        except UsageError as e:
            with lock:
                log.write(f"error: {e}\n")
            raise
        except BaseException:
            with lock:
                log.write(traceback.format_exc())
            raise
        finally:
            show_above(None)
            sys.stdout, sys.stderr = out, err
            for tee in tees:
                tee.detach()
