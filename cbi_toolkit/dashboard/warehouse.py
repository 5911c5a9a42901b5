"""Reading the warehouse a dashboard shows, from a sink URL."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from cbi_toolkit.errors import SinkError

#: Where ``cbi-run`` writes by default (relative to the working directory, like the spec's
#: ``sink.path``); ``duckdb:///abs/file.duckdb`` names an absolute path.
DEFAULT_SINK = "duckdb:runs/forecasts.duckdb"
NO_DATA_HINT = ("run a spec first, e.g. `cbi-run specs/zl_1m_quick.yaml` (it writes to "
                "runs/forecasts.duckdb), or point --sink at the warehouse the runs write to")


def open_sink(url: str):
    """The sink a URL names: ``duckdb:rel/path``, ``duckdb:///abs/path`` or
    ``bigquery://PROJECT/DATASET[?...]`` (see sinks.resolve.sink_from_url)."""
    from cbi_toolkit.sinks import make_sink
    from cbi_toolkit.sinks.resolve import sink_from_url

    return make_sink(sink_from_url(url))


@dataclass
class Warehouse:
    """What the dashboard shows, read once per refresh."""

    latest: pd.DataFrame
    actuals: pd.DataFrame
    scorecard: pd.DataFrame
    runs: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.latest.empty and self.scorecard.empty

    @property
    def series(self) -> list[str]:
        found = set()
        for frame in (self.latest, self.scorecard):
            if "series" in frame:
                found |= set(frame["series"])
        return sorted(found)

    def horizons(self, series: str) -> list[str]:
        from cbi_toolkit.targets import HORIZONS

        found = set()
        for frame in (self.latest, self.scorecard):
            if "series" in frame:
                found |= set(frame.loc[frame["series"] == series, "horizon"])
        return sorted(found, key=lambda h: HORIZONS.get(h, 10**6))


def read_warehouse(url: str) -> Warehouse:
    sink = open_sink(url)
    frames = {name: _dates(sink.read(name))
              for name in ("latest_predictions", "actuals", "scorecard", "runs")}
    if len(frames["latest_predictions"]) and "series" not in frames["latest_predictions"]:
        raise SinkError(f"{url}: the warehouse was written before the series key; the next "
                        "cbi-run (or cbi-run --sink-only runs/<run_id>) writing to it migrates it")
    return Warehouse(frames["latest_predictions"], frames["actuals"], frames["scorecard"],
                     frames["runs"])


def _dates(frame: pd.DataFrame) -> pd.DataFrame:
    for col in ("origin_date", "target_date", "date"):
        if col in frame:
            frame[col] = pd.to_datetime(frame[col])
    return frame
