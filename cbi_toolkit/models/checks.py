"""Input checks of the network regressor, the baselines and the peers."""

from __future__ import annotations

import numpy as np

from cbi_toolkit.features.windows import Windows, as_windows


def check_y(y, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or len(y) != n:
        raise ValueError(f"y must be [n_samples, n_horizons] with n_samples={n}, "
                         f"got shape {y.shape}")
    if n < 1:
        raise ValueError("no samples to fit")
    return check_targets(y)


def check_targets(y: np.ndarray) -> np.ndarray:
    """Targets may be NaN where a horizon's future is not yet known (a horizon mask:
    each head trains on the origins whose own target is known); every origin and every
    horizon needs at least one known target, and none may be infinite."""
    if np.isinf(y).any():
        raise ValueError("y contains infinite targets")
    known = np.isfinite(y)
    if not known.any(axis=1).all():
        raise ValueError(f"y has {int((~known.any(axis=1)).sum())} origins with no known target; "
                         "pass only labelled samples (an origin with at least one known target)")
    if not known.any(axis=0).all():
        raise ValueError("a horizon has no known target in y; pass origins whose targets are known")
    return y


def n_samples(X) -> int:
    return len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]


def check_horizons(horizons, y: np.ndarray) -> tuple[int, ...]:
    days = tuple(int(h) for h in horizons)
    if len(days) != y.shape[1] or min(days, default=0) < 1:
        raise ValueError(f"horizons {days} must give one positive length in trading days per "
                         f"column of y ({y.shape[1]} columns)")
    return days


def _used_rows(win: Windows) -> np.ndarray:
    """Mask of the rows of ``win.values`` that some sample reads."""
    marks = np.zeros(len(win.values) + 1, dtype=np.int64)
    np.add.at(marks, win.ends - win.window + 1, 1)
    np.add.at(marks, win.ends + 1, -1)
    return np.cumsum(marks[:-1]) > 0


def check_inputs(X, y=None) -> tuple[Windows, np.ndarray | None]:
    """`Windows` and float32 ``y [n, H]``; ValueError on NaN or inf, naming where."""
    win = as_windows(X)
    used = _used_rows(win)
    bad = ~np.isfinite(win.values[used])
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise ValueError(f"X contains {int(bad.sum())} NaN or infinite feature values "
                         f"(first at feature column {int(cols[0])}, row "
                         f"{int(np.flatnonzero(used)[rows[0]])} of the feature matrix); "
                         "drop or fill them before fitting")
    if y is None:
        return win, None
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or len(y) != len(win):
        raise ValueError(f"y must be [n_samples, n_horizons] with n_samples={len(win)}, "
                         f"got shape {y.shape}")
    return win, check_targets(y)
