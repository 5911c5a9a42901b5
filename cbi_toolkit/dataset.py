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
                       self.feature_names, self.horizons)


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


def load_samples(spec: Spec, ctx: SourceContext, report: DataReport | None = None,
                 allow_ended: bool = False) -> tuple[pd.DataFrame, Samples]:
    report = report if report is not None else DataReport()
    frame = load_frame(spec, ctx, report, allow_ended=allow_ended)
    return frame, make_samples(spec, frame, report)
