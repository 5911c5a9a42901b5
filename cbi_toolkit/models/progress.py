"""What a fit prints: skorch's epoch table without colour codes off a terminal, with a
time-left column, and a batch progress bar on a terminal."""

from __future__ import annotations

import re
import sys

from skorch.callbacks import PrintLog, ProgressBar

from cbi_toolkit.progress import format_seconds

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class EpochLog(PrintLog):
    """skorch's epoch table; colours only when stdout is a terminal, and an ``eta``
    column: the mean epoch time so far times the epochs left to ``max_epochs``
    (an upper bound: early stopping may end the fit sooner)."""

    def on_epoch_end(self, net, **kwargs):
        self.net_ = net
        try:
            super().on_epoch_end(net, **kwargs)
        finally:
            del self.net_

    def table(self, row):
        net = getattr(self, "net_", None)
        if net is not None and "dur" in row:
            durations = [h.get("dur", 0.0) for h in net.history]
            left = max(int(net.max_epochs) - len(net.history), 0)
            row = {**row, "eta": format_seconds(left * sum(durations) / len(durations))}
        text = super().table(row)
        return text if _is_terminal(sys.stdout) else ANSI.sub("", text)


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_callbacks(verbose: int) -> list[tuple[str, object]]:
    """A tqdm bar over each epoch's batches (with its ETA) when stderr is a terminal."""
    if verbose and _is_terminal(sys.stderr):
        return [("progress", ProgressBar())]
    return []
