"""Progress lines for a run: folds done, time taken, time left (one line per fold in logs)."""

from __future__ import annotations

import logging
import time


def format_seconds(seconds: float) -> str:
    """``75`` -> ``1m15s``; ``3700`` -> ``1h01m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class FoldProgress:
    """``on_fold`` callback of `cbi_toolkit.backtest.backtest`: logs, after each fold,
    how many are done, the time so far and the time left at the mean pace."""

    def __init__(self, log: logging.Logger, what: str = "walk-forward"):
        self.log, self.what = log, what
        self.start = time.perf_counter()

    def __call__(self, k: int, n: int) -> None:
        elapsed = time.perf_counter() - self.start
        done = k + 1
        left = elapsed / done * (n - done)
        tail = f", about {format_seconds(left)} left" if done < n else ""
        self.log.info("%s: fold %d/%d done, %s so far%s", self.what, done, n,
                      format_seconds(elapsed), tail)
