"""Load the spec's sources and align them on the target's trading days.

Rules (each refusal is a `DataError` naming the source and column):

- the target defines the calendar; its prices must be positive and present on
  every one of its dates, and no gap between dates may exceed ``max_gap_days``;
- a release published after the date it describes is moved to the date it
  became known (``release: cftc_weekly``; ``lag_days``) before alignment;
- a driver takes, on each trading day, its latest observation at or before that
  day, but only while that observation is at most ``ffill_limit`` trading days
  old; older than that it is missing (never zero);
- a driver that ends before the target, beyond its fill limit, is refused: the
  newest forecast origin could not be built;
- every series passes its source's plausibility rules (``checks:``: largest
  one-day move, interquartile jumps, range, missing-value sentinels) on the
  dates the run uses, before any release shift, so the refusal names the
  file's own date (`cbi_toolkit.sources.plausibility`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cbi_toolkit.errors import DataError
from cbi_toolkit.sources.base import SourceBase, SourceContext
from cbi_toolkit.sources.plausibility import check_series
from cbi_toolkit.spec import Spec

log = logging.getLogger(__name__)

#: A CFTC report describes Tuesday and is released Friday 15:30 ET, after the
#: CBOT close, so it is first usable at the next session: as-of date + 4 days.
CFTC_RELEASE_DAYS = 4
#: a driver's plausibility is checked from this many days before the target's first date
CHECK_LEAD_DAYS = 40


@dataclass
class DataReport:
    """What loading did: rows per source, and rows each rule dropped."""

    sources: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    rows: int = 0
    #: with ``allow_ended``: drivers that end before the target -> their last date
    ended: dict[str, pd.Timestamp] = field(default_factory=dict)
    #: the features those drivers feed (missing after the first end; scaled to their mean)
    missing_features: list[str] = field(default_factory=list)

    def drop(self, rule: str, n: int) -> None:
        if n:
            self.dropped[rule] = self.dropped.get(rule, 0) + int(n)
            log.debug("dropped %d rows: %s", n, rule)


def resolve_data_dir(cli_value: str | os.PathLike | None = None,
                     start: Path | None = None) -> Path | None:
    """``--data-dir``, else ``CBI_DATA_DIR``, else ``../shared/data`` beside the
    checkout (searched upwards from ``start``), else None."""
    for value in (cli_value, os.environ.get("CBI_DATA_DIR")):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise DataError(f"data directory {path} does not exist; fix --data-dir or "
                                "CBI_DATA_DIR")
            return path
    here = (start or Path.cwd()).resolve()
    for parent in (here, *here.parents):
        candidate = parent.parent / "shared" / "data"
        if (parent / ".git").exists() and candidate.is_dir():
            return candidate
    pkg_checkout = Path(__file__).resolve().parents[1]
    candidate = pkg_checkout.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def load_frame(spec: Spec, ctx: SourceContext, report: DataReport | None = None,
               allow_ended: bool = False) -> pd.DataFrame:
    """All series of the spec on the target's trading days (one column each).

    ``allow_ended`` (scoring a saved model on newer data): a driver that ends before
    the target is missing after its end instead of an error, recorded in ``report.ended``;
    the spec's ``end`` does not apply then (the newer data is the point).
    """
    end = None if allow_ended or spec.end is None else pd.Timestamp(spec.end)
    report = report if report is not None else DataReport()
    raw = {}
    loaded = []
    for i, source in enumerate(spec.data):
        frame = source.load(ctx)
        report.sources[source.label] = len(frame)
        loaded.append((i, source, frame))
        raw[source.label] = (source, released(frame, source))
    target = next(f[spec.target].dropna() for _, _, f in loaded if spec.target in f.columns)
    target = target[:end] if end is not None else target
    span = (target.index.min(), target.index.max()) if len(target) else None
    for i, source, frame in loaded:
        check_plausible(frame, source, f"data[{i}]", span)
    target_src, target_frame = next(v for v in raw.values() if spec.target in v[1].columns)
    if end is not None:
        target_frame = target_frame[:end]
        if target_frame.empty:
            raise DataError(f"{target_src.label}: no target date on or before end "
                            f"{end:%Y-%m-%d}; choose a later end")
    calendar = validate_target(target_frame[spec.target], target_src.label, spec.max_gap_days)
    columns = {}
    for source, frame in raw.values():
        for name in frame.columns:
            if name == spec.target:
                columns[name] = target_frame[name]
                continue
            aligned = align(frame[name], calendar, source.ffill_limit)
            if source.lag_days:
                aligned = aligned.shift(source.lag_days)
            if allow_ended and aligned.notna().any() and np.isnan(aligned.iloc[-1]):
                report.ended[name] = frame[name].dropna().index.max()
            else:
                check_driver_end(aligned, frame[name], source, name)
            columns[name] = aligned
    out = pd.DataFrame(columns, index=calendar)
    for name in out.columns:
        if spec.source_for(name).role == "price" and (out[name] <= 0).any():
            day = out.index[(out[name] <= 0).to_numpy()][0]
            raise DataError(f"{spec.source_for(name).label}: column {name!r} has a non-positive "
                            f"price on {day:%Y-%m-%d}; prices must be > 0")
    report.start, report.end, report.rows = out.index[0], out.index[-1], len(out)
    return out


def roles(spec: Spec) -> dict[str, str]:
    """Series name -> role, for the feature builders."""
    return {name: src.role for src in spec.data for name in src.columns.values()}


def check_plausible(frame: pd.DataFrame, source: SourceBase, where: str,
                    span: tuple[pd.Timestamp, pd.Timestamp] | None) -> None:
    """Each column of a source through its plausibility rules, on the dates the run
    uses (the target's span, from a little before its first date)."""
    if span is not None:
        first, last = span
        frame = frame[(frame.index >= first - pd.Timedelta(days=CHECK_LEAD_DAYS))
                      & (frame.index <= last)]
    for name in frame.columns:
        check_series(frame[name], source.checks, source.role, source.label, where)


def released(frame: pd.DataFrame, source: SourceBase) -> pd.DataFrame:
    """Move values from the date they describe to the date they became known."""
    if source.release == "cftc_weekly":
        frame = frame.copy()
        frame.index = frame.index + pd.Timedelta(days=CFTC_RELEASE_DAYS)
    return frame


def validate_target(price: pd.Series, label: str, max_gap_days: int) -> pd.DatetimeIndex:
    """Check the target price series and return its trading calendar."""
    missing = price.isna()
    if missing.all():
        raise DataError(f"{label}: target column {price.name!r} is empty")
    if missing.any():
        day = price.index[missing.to_numpy()][0]
        raise DataError(f"{label}: target column {price.name!r} is blank on {day:%Y-%m-%d} "
                        f"({int(missing.sum())} blank rows); the target must be complete")
    if (price <= 0).any():
        day = price.index[(price <= 0).to_numpy()][0]
        raise DataError(f"{label}: target column {price.name!r} has a non-positive price "
                        f"{price[day]} on {day:%Y-%m-%d}; prices must be > 0")
    gaps = price.index.to_series().diff().dt.days
    if (gaps > max_gap_days).any():
        end = gaps.idxmax()
        raise DataError(f"{label}: target has a gap of {int(gaps.max())} calendar days ending "
                        f"{end:%Y-%m-%d} (max_gap_days: {max_gap_days}); fill the data or raise "
                        "max_gap_days in the spec")
    return pd.DatetimeIndex(price.index, name="date")


def align(series: pd.Series, calendar: pd.DatetimeIndex, ffill_limit: int) -> pd.Series:
    """Latest observation at or before each trading day, at most ``ffill_limit``
    trading days old; NaN otherwise."""
    obs = series.dropna()
    pos = np.searchsorted(obs.index.to_numpy(), calendar.to_numpy(), side="right") - 1
    have = pos >= 0
    values = np.full(len(calendar), np.nan)
    values[have] = obs.to_numpy()[pos[have]]
    obs_dates = obs.index.to_numpy()[np.maximum(pos, 0)]
    # age in trading days: today's position minus that of the first session on/after the obs
    first_session = np.searchsorted(calendar.to_numpy(), obs_dates, side="left")
    age = np.arange(len(calendar)) - first_session
    values[have & (age > ffill_limit)] = np.nan
    return pd.Series(values, index=calendar, name=series.name)


def check_driver_end(aligned: pd.Series, raw: pd.Series, source: SourceBase, name: str) -> None:
    if aligned.notna().any() and np.isnan(aligned.iloc[-1]):
        last = raw.dropna().index.max()
        raise DataError(
            f"{source.label}: series {name!r} ends {last:%Y-%m-%d}, before the target's last "
            f"date {aligned.index[-1]:%Y-%m-%d} (ffill_limit: {source.ffill_limit} trading days); "
            "extend its data, raise ffill_limit, or remove it from the spec")
    if aligned.isna().all():
        raise DataError(f"{source.label}: series {name!r} has no values on the target's trading "
                        "days; check its dates and the target's")


#: the first walk-forward fold must train on at least this many origins
MIN_TRAIN_ORIGINS = 20


def check_folds(spec: Spec, dates: pd.DatetimeIndex) -> None:
    """Refuse validation settings the labelled history (origins dated ``dates``) cannot
    hold, before a run folder exists: the folds are laid out by
    `cbi_toolkit.walkforward.walk_forward`, and the first must train on enough origins."""
    from cbi_toolkit.walkforward import walk_forward

    v, n = spec.validation, len(dates)
    try:  # a SpecError names a test_start it cannot use
        folds = walk_forward(spec, n, dates).folds(n)
    except ValueError:  # scikit-learn: more splits than the history holds
        folds = []
    first_train = len(folds[0].train) if folds else 0
    if first_train < MIN_TRAIN_ORIGINS or any(len(f.test) == 0 for f in folds):
        raise DataError(
            f"{spec.name}: validation needs {v.n_splits} folds after a gap of {spec.gap}, leaving "
            f"{first_train} origins for the first fold's training (at least {MIN_TRAIN_ORIGINS}) "
            f"of the {n} labelled; lower validation.n_splits or validation.test_size, or use "
            "more history")
