"""Ctrl-C during a run: it stops the run (status ``interrupted``) instead of skorch's
"stop training early"."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path


class RunInterrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt
    """Ctrl-C during a run. Not a KeyboardInterrupt, which skorch would take as
    "stop training early" and carry on with a half-trained model."""

    def __init__(self, run_dir: Path):
        super().__init__(f"interrupted; resume with `cbi-run --resume {run_dir}`")
        self.run_dir = run_dir


@contextlib.contextmanager
def interrupts_raise(run_dir: Path):
    """SIGINT raises RunInterrupted while the run is in progress."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise RunInterrupted(run_dir)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
