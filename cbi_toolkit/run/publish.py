"""Publishing a run: its forecasts and track record (backtest, actuals, skill) to the sink,
and what is kept in the run folder when the sink fails."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cbi_toolkit import track_record
from cbi_toolkit.errors import SinkError
from cbi_toolkit.run.folder import set_status
from cbi_toolkit.run.options import RunEvents
from cbi_toolkit.sinks import make_sink
from cbi_toolkit.spec import Spec
from cbi_toolkit.storage import atomic_write_text


def sink_for(spec: Spec, override: str | None):
    """The sink a run writes to: ``override`` (a ``--sink`` URL) or the spec's."""
    from cbi_toolkit.sinks.resolve import sink_config

    return make_sink(sink_config(spec.sink, override))


def write_sink(spec: Spec, override: str | None, forecasts: pd.DataFrame, run_dir: Path,
               events: RunEvents, sink=None, kept: Path | None = None,
               extra: dict | None = None) -> int:
    """Upsert the forecasts, then ``extra`` (``track_record`` tables); on failure keep them in
    the run folder and name ``--sink-only`` (``kept``: where forecasts other than the run's
    own forecasts.csv were saved). Returns the forecast rows written."""
    sink = sink if sink is not None else sink_for(spec, override)
    try:
        n = sink.write(forecasts)
        written = track_record.write(sink, extra or {})
    except SinkError as exc:
        if kept is not None:
            raise SinkError(f"{exc} -- the forecasts are kept in {kept}") from None
        set_status(run_dir, "sink_failed", error=str(exc))
        raise SinkError(f"{exc} -- the forecasts are kept in {run_dir / 'forecasts.csv'}; write "
                        f"them later with `cbi-run --sink-only {run_dir}`") from None
    events.note(f"sink: wrote {n} forecast rows ({type(sink).__name__})")
    if written:
        events.note("sink: also " + ", ".join(f"{k} {v} rows" for k, v in written.items()))
    if kept is not None:
        return n
    atomic_write_text(run_dir / "sink.json", json.dumps(
        {"written": n, "sink": str(override or spec.sink.model_dump())}))
    set_status(run_dir, "done", sink_rows=n)
    return n


def write_evidence(sink, record: dict[str, pd.DataFrame], events: RunEvents) -> None:
    """After a failed gate: the track record (backtest, actuals, the run's skill and gate
    result) still goes to the sink, so the dashboard shows why no forecast was published;
    a sink failure here is reported, not raised (the run's outcome is the gate's)."""
    try:
        written = track_record.write(sink, record)
    except SinkError as exc:
        events.note(f"sink: the track record was not written either ({exc})")
        return
    events.note("sink: wrote the track record only (" + ", ".join(
        f"{k} {v} rows" for k, v in written.items()) + ")")
