"""What a run is told, what it reports as it goes, and what it returns."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("cbi_toolkit.run")


@dataclass(frozen=True)
class RunOptions:
    """Where a run reads and writes: ``data_dir`` (None: ``$CBI_DATA_DIR``, else
    ../shared/data), ``runs_dir`` (None: the spec's), ``sink`` (a sink URL overriding the
    spec's), and ``quiet`` (no epoch tables)."""

    data_dir: str | None = None
    runs_dir: str | None = None
    sink: str | None = None
    quiet: bool = False


class RunEvents:
    """What a run reports while it works. This default logs the notes (logger
    ``cbi_toolkit.run``) and leaves the tables to the caller; the command line prints both."""

    def note(self, text: str) -> None:
        """A line of progress or outcome (``run <id> -> <dir>``, ``sink: wrote ...``)."""
        log.info("%s", text)

    def assessed(self, summary: pd.DataFrame, horizons: list[str], notes: dict[str, str]) -> None:
        """The walk-forward result, pooled per horizon (``notes``: how the shipped model
        combines the net and the random walk), before the final fit starts."""

    def forecast(self, forecasts: pd.DataFrame, bands: tuple[int, ...]) -> None:
        """The forecasts from the newest origin (``bands``: the interval levels to show)."""

    def evaluated(self, summary: pd.DataFrame, horizons: list[str]) -> None:
        """A saved model's scores on newer origins (``cbi-run --evaluate``)."""


#: A run's outcomes: ``done`` (forecasts written), ``gate_failed`` (the model failed its
#: deploy gate; nothing published), ``prepared`` (stopped after the data stage),
#: ``sink_failed`` (training finished, the sink write has yet to succeed).
STATES = ("done", "gate_failed", "prepared", "sink_failed")


@dataclass
class RunResult:
    """What a run (or a command on a saved run) ended with."""

    state: str
    run_dir: Path | None = None
    forecasts: pd.DataFrame | None = None
    failures: list[str] = field(default_factory=list)
    sink_rows: int | None = None

    @property
    def gate_failed(self) -> bool:
        return self.state == "gate_failed"


@dataclass
class EvaluationResult:
    """A saved model scored beside the baselines on origins from ``since`` on."""

    summary: pd.DataFrame
    horizons: list[str]
    since: pd.Timestamp
    path: Path
