"""Input checks shared by the baselines and peers."""

from __future__ import annotations

import numpy as np


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
