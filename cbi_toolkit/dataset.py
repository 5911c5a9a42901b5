"""From a spec to model-ready samples: aligned frame -> features -> targets -> windows."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cbi_toolkit.data import DataReport, load_frame, roles
from cbi_toolkit.errors import DataError
from cbi_toolkit.features.builder import FeatureBuilder
from cbi_toolkit.features.windows import Windows
from cbi_toolkit.metrics import FoldPrediction
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import Spec
from cbi_toolkit.targets import HORIZONS, forward_log_returns

log = logging.getLogger(__name__)


@dataclass
class Samples:
    """One sample per forecast origin whose whole window has features.

    ``y`` holds forward log returns per horizon, NaN where the future is not
    yet known (those origins are for forecasting, not training).
    """

    X: Windows
    y: np.ndarray
    dates: pd.DatetimeIndex
    price: np.ndarray
    feature_names: list[str]
    horizons: list[str]
    #: extra training history for the net (`Spec.history`), before the first origin
    history: Samples | None = None

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def labelled(self) -> np.ndarray:
        """Mask of origins whose targets are all known."""
        return ~np.isnan(self.y).any(axis=1)

    @property
    def trainable(self) -> np.ndarray:
        """Mask of origins with at least one known target (horizon masks do the rest)."""
        return ~np.isnan(self.y).all(axis=1)

    def subset(self, idx) -> Samples:
        return Samples(self.X[idx], self.y[idx], self.dates[idx], self.price[idx],
                       self.feature_names, self.horizons, self.history)

    def training_set(self, rows, history: bool = True,
                     valid_fraction: float | None = None) -> tuple[Windows, np.ndarray]:
        """``X, y`` of the origins ``rows``, after the extra history (if any and asked for).
        The history comes first, so the net's validation tail (the last ``valid_fraction``
        of the samples) is the target's own: with ``valid_fraction`` only the newest history
        windows are kept that leave the tail inside ``rows``."""
        X, y = self.X[rows], self.y[rows]
        if not history or self.history is None:
            return X, y
        keep = len(self.history)
        if valid_fraction:
            n = len(y)
            keep = min(keep, max(0, int(n / valid_fraction) - n + 1))
            while keep and max(1, round((keep + n) * valid_fraction)) > n:
                keep -= 1
        h = self.history.subset(np.arange(len(self.history) - keep, len(self.history)))
        return Windows.concat(h.X, X), np.concatenate([h.y, y])


    def fold_predictions(self, model: str, fold: int, role: str, rows: np.ndarray,
                         mu: np.ndarray, sigma: np.ndarray, series: str | None = None
                         ) -> list[FoldPrediction]:
        """``model``'s output ``mu, sigma [len(rows), H]`` at the origins ``rows``, one
        prediction per horizon on the origins whose target is known (near the end of the
        data a long horizon's is not)."""
        out = []
        for j, horizon in enumerate(self.horizons):
            known = np.isfinite(self.y[rows, j])
            if not known.any():
                continue
            at = rows[known]
            out.append(FoldPrediction(model, fold, horizon, self.y[at, j], mu[known, j],
                                      sigma[known, j], self.price[at], self.dates[at], role,
                                      series))
        return out


def build_features(spec: Spec, frame: pd.DataFrame) -> pd.DataFrame:
    builder = FeatureBuilder(spec.feature_items(), target=spec.target, roles=roles(spec))
    return builder.fit_transform(frame)


def make_samples(spec: Spec, frame: pd.DataFrame, report: DataReport | None = None) -> Samples:
    """Features, targets and windows from the aligned frame."""
    report = report if report is not None else DataReport()
    features = build_features(spec, frame)
    if features.shape[1] == 0:
        raise DataError(f"{spec.name}: the features {[n for n, _ in spec.feature_items()]} "
                        "produce no columns for this data; add drivers or other features")
    inf = np.isinf(features.to_numpy(dtype=float))
    if inf.any():
        row, col = np.argwhere(inf)[0]
        raise DataError(f"{spec.name}: feature {features.columns[col]!r} is infinite on "
                        f"{features.index[row]:%Y-%m-%d} ({int(inf.sum())} values); check the "
                        "input series it is built from (a zero or missing price?)")
    finite = np.isfinite(features.to_numpy())
    if report.ended:  # scoring newer data: the features an ended driver feeds are missing after it
        after = features.index > min(report.ended.values())
        report.missing_features = [c for c, bad in zip(features.columns, ~finite[after].all(axis=0),
                                                       strict=True) if bad]
        keep = ~features.columns.isin(report.missing_features)
        finite = finite | (after[:, None] & ~keep[None, :])
    valid_row = finite.all(axis=1)
    for col in features.columns:
        n_missing = int((~np.isfinite(features[col].to_numpy())).sum())
        if n_missing:
            log.debug("feature %s missing on %d rows", col, n_missing)
    report.drop("feature warm-up or missing driver data (a feature is NaN)", (~valid_row).sum())
    # an origin needs a full window of valid rows
    run = pd.Series(valid_row.astype(int), index=features.index).rolling(spec.window).sum()
    valid_origin = (run == spec.window).to_numpy()
    report.drop(f"origin's {spec.window}-day window reaches a dropped row",
                (valid_row & ~valid_origin).sum())
    ends = np.flatnonzero(valid_origin)
    price = frame[spec.target]
    targets = forward_log_returns(price, {h: HORIZONS[h] for h in spec.horizons})
    need = spec.window + spec.max_horizon + spec.gap
    n_labelled = int((~targets.iloc[ends].isna().any(axis=1)).sum())
    if n_labelled < need:
        raise DataError(f"{spec.name}: only {n_labelled} labelled origins after the data rules; "
                        f"need at least window + longest horizon + gap = {need}; use more "
                        "history, a shorter window or fewer drivers")
    log_price = np.log(price.reindex(features.index).to_numpy(dtype=np.float64))
    windows = Windows(features.to_numpy(dtype=np.float32), ends, spec.window, context=log_price)
    return Samples(windows, targets.to_numpy()[ends], features.index[ends],
                   price.to_numpy()[ends], list(features.columns), list(spec.horizons))


def history_samples(spec: Spec, ctx: SourceContext, frame: pd.DataFrame,
                    feature_names: list[str]) -> Samples | None:
    """The windows of `Spec.history` (None without it): the history series' dates before
    the target's first date (from ``history.start``), its prices as the target, every
    other series missing. Features of the target's own prices are computed from it; a
    feature with no value anywhere in the history (a driver's) stays NaN, which the net's
    scaler fills with the training fold's mean. Targets are the history's own forward log
    returns within the history, so nothing is spliced into the target's price level."""
    if spec.history is None:
        return None
    src = spec.history.source
    price = src.load(ctx)[spec.target].dropna()
    first = frame.index[0]
    start = pd.Timestamp(spec.history.start) if spec.history.start else price.index[0]
    price = price[(price.index >= start) & (price.index < first)]
    if (price <= 0).any():
        day = price.index[(price <= 0).to_numpy()][0]
        raise DataError(f"{src.label}: history has a non-positive price on {day:%Y-%m-%d}")
    hframe = pd.DataFrame(np.nan, index=price.index, columns=frame.columns)
    hframe[spec.target] = price
    features = build_features(spec, hframe)
    if list(features.columns) != feature_names:
        raise DataError(f"{src.label}: the history's features differ from the target's")
    values = features.to_numpy(dtype=np.float32)
    absent = ~np.isfinite(values).any(axis=0)
    valid_row = np.isfinite(values[:, ~absent]).all(axis=1)
    run = pd.Series(valid_row.astype(int)).rolling(spec.window).sum().to_numpy()
    targets = forward_log_returns(price, {h: HORIZONS[h] for h in spec.horizons}).to_numpy()
    ends = np.flatnonzero((run == spec.window) & np.isfinite(targets).any(axis=1))
    if not len(ends):
        raise DataError(f"{src.label}: no history window before {first:%Y-%m-%d} (from "
                        f"{start:%Y-%m-%d}); choose an earlier history.start or remove history")
    log.info("history %s: %d training windows %s .. %s, %d features held at the fold mean",
             src.label, len(ends), f"{price.index[ends[0]]:%Y-%m-%d}",
             f"{price.index[ends[-1]]:%Y-%m-%d}", int(absent.sum()))
    windows = Windows(values, ends, spec.window, context=np.log(price.to_numpy(np.float64)))
    return Samples(windows, targets[ends], price.index[ends], price.to_numpy()[ends],
                   feature_names, list(spec.horizons))


def load_samples(spec: Spec, ctx: SourceContext, report: DataReport | None = None,
                 allow_ended: bool = False) -> tuple[pd.DataFrame, Samples]:
    report = report if report is not None else DataReport()
    frame = load_frame(spec, ctx, report, allow_ended=allow_ended)
    samples = make_samples(spec, frame, report)
    samples.history = history_samples(spec, ctx, frame, samples.feature_names)
    return frame, samples
