"""Significance of forecast comparisons: Diebold–Mariano, direction, coverage, interval score.

Pure functions over arrays of out-of-sample results in time order. CRPS stays
in `cbi_toolkit.evaluation` (`crps_gaussian`).

References
----------
- Diebold, F. X. & Mariano, R. S. (1995). Comparing predictive accuracy.
  Journal of Business & Economic Statistics 13(3), 253–263.
- Harvey, D., Leybourne, S. & Newbold, P. (1997). Testing the equality of
  prediction mean squared errors. International Journal of Forecasting 13(2), 281–291.
- Newey, W. K. & West, K. D. (1987). A simple, positive semi-definite,
  heteroskedasticity and autocorrelation consistent covariance matrix. Econometrica 55(3), 703–708.
- Pesaran, M. H. & Timmermann, A. (1992). A simple nonparametric test of
  predictive performance. Journal of Business & Economic Statistics 10(4), 461–465
  (the independence null behind `direction_test`).
- Gneiting, T. & Raftery, A. E. (2007). Strictly proper scoring rules,
  prediction, and estimation. JASA 102(477), 359–378 (interval score, eq. 43).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class DMResult:
    """``stat > 0``: the model's loss is larger (worse) than the reference's."""

    stat: float
    p_value: float
    n: int
    mean_diff: float


@dataclass(frozen=True)
class CoverageResult:
    """Empirical coverage of a band, its HAC standard error and the p-value of
    "the band holds ``level``"."""

    coverage: float
    se: float
    p_value: float
    n: int


@dataclass(frozen=True)
class DirectionResult:
    accuracy: float
    n: int
    base_rate: float
    p_value: float


def newey_west_variance(d: np.ndarray, lags: int) -> float:
    """Long-run variance of ``d``: gamma_0 + 2 sum_{k=1..lags} (1 - k/(lags+1)) gamma_k.

    Autocovariances use the 1/n divisor; the Bartlett weights keep the estimate
    non-negative (Newey & West 1987).
    """
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    e = d - d.mean()
    lrv = float(e @ e) / n
    for k in range(1, min(int(lags), n - 1) + 1):
        lrv += 2.0 * (1.0 - k / (lags + 1.0)) * float(e[k:] @ e[:-k]) / n
    return lrv


def hln_factor(n: int, h: int) -> float:
    """Harvey–Leybourne–Newbold small-sample factor sqrt((n + 1 - 2h + h(h-1)/n) / n)."""
    return float(np.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n))


def diebold_mariano(loss_model, loss_ref, h: int, lags: int | None = None) -> DMResult:
    """Diebold–Mariano test of equal expected loss, with the HLN correction.

    ``loss_model`` and ``loss_ref`` are per-origin losses in time order (pass
    ``|e|`` or ``e**2``); pairs where either is not finite are dropped. With
    d = loss_model - loss_ref, DM = mean(d) / sqrt(LRV / n), LRV by Newey–West
    (Bartlett) with ``lags`` (default h - 1, the MA order of an h-step error),
    scaled by `hln_factor` and compared with Student t on n - 1 degrees of
    freedom, two-sided. For h = 1 and no lags this is the one-sample t-test of d.

    Returns nan stat and p when fewer than 2 pairs remain, the long-run
    variance is not positive (d constant: the test is undefined, not
    significant) or n is too small for h (the HLN factor's radicand <= 0).
    """
    a = np.asarray(loss_model, dtype=np.float64).ravel()
    b = np.asarray(loss_ref, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"loss_model and loss_ref differ in length ({len(a)} vs {len(b)})")
    if int(h) < 1:
        raise ValueError(f"h must be >= 1, got {h}")
    h = int(h)
    lags = h - 1 if lags is None else int(lags)
    if lags < 0:
        raise ValueError(f"lags must be >= 0, got {lags}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        return DMResult(float("nan"), float("nan"), n, mean)
    lrv = newey_west_variance(d, lags)
    factor_sq = (n + 1 - 2 * h + h * (h - 1) / n) / n
    if not lrv > 0 or not factor_sq > 0:
        return DMResult(float("nan"), float("nan"), n, mean)
    stat = mean / np.sqrt(lrv / n) * np.sqrt(factor_sq)
    p = 2.0 * stats.t.sf(abs(stat), df=n - 1)
    return DMResult(float(stat), float(p), n, mean)


def direction_test(y, mu) -> DirectionResult:
    """Direction accuracy with its base rate and a one-sided binomial p-value.

    Scored on origins where both the outcome ``y`` and the forecast ``mu`` moved
    (non-zero, finite). ``base_rate`` b is the share of up-moves there; the null
    is a guess independent of the outcome that says "up" as often as the
    forecast does (rate q), so a hit has probability p0 = q·b + (1-q)(1-b)
    (the independence null of Pesaran & Timmermann 1992). The p-value is
    ``binomtest(hits, n, p0, alternative="greater")``: small means the forecast
    gets the sign right more often than its own up-rate explains.
    """
    y = np.asarray(y, dtype=np.float64).ravel()
    mu = np.asarray(mu, dtype=np.float64).ravel()
    if y.shape != mu.shape:
        raise ValueError(f"y and mu differ in length ({len(y)} vs {len(mu)})")
    moved = np.isfinite(y) & np.isfinite(mu) & (y != 0) & (mu != 0)
    n = int(moved.sum())
    if n == 0:
        return DirectionResult(float("nan"), 0, float("nan"), float("nan"))
    up, up_pred = y[moved] > 0, mu[moved] > 0
    hits = int((up == up_pred).sum())
    b, q = float(up.mean()), float(up_pred.mean())
    p0 = q * b + (1 - q) * (1 - b)
    p = stats.binomtest(hits, n, p0, alternative="greater").pvalue
    return DirectionResult(hits / n, n, b, float(p))


def coverage_test(inside, level: float, lags: int = 0) -> CoverageResult:
    """Is the share of outcomes inside their bands ``level``? A z-test of the hit rate
    with the Newey-West long-run variance of the hits (``lags``: overlapping origins,
    as in `diebold_mariano`), two-sided, normal. With ``lags = 0`` the standard error is
    the binomial sqrt(p (1 - p) / n) (the Wald test of a proportion).

    At long horizons the hits of neighbouring origins are nearly the same event, so the
    standard error is large: a 12-month band scored weekly over five years carries about
    five independent outcomes, and its coverage is known only to within tens of points.
    """
    hits = np.asarray(inside, dtype=np.float64).ravel()
    hits = hits[np.isfinite(hits)]
    n = len(hits)
    if n < 2:
        return CoverageResult(float(hits.mean()) if n else float("nan"), float("nan"),
                              float("nan"), n)
    rate = float(hits.mean())
    lrv = newey_west_variance(hits, lags)
    se = float(np.sqrt(lrv / n)) if lrv > 0 else 0.0
    if se == 0.0:  # every outcome inside (or outside): no variance to test with
        return CoverageResult(rate, se, 1.0 if rate == level else 0.0, n)
    p = 2.0 * stats.norm.sf(abs(rate - level) / se)
    return CoverageResult(rate, se, float(p), n)


def interval_score(y, lower, upper, alpha: float) -> float:
    """Mean interval score of central (1 - alpha) intervals (Gneiting & Raftery 2007, eq. 43).

    S = (u - l) + (2/alpha)(l - y)·1{y < l} + (2/alpha)(y - u)·1{y > u}; lower is better.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y, lower, upper = (np.asarray(v, dtype=np.float64) for v in (y, lower, upper))
    width = upper - lower
    below = (2.0 / alpha) * np.maximum(lower - y, 0.0)
    above = (2.0 / alpha) * np.maximum(y - upper, 0.0)
    return float(np.mean(width + below + above))


def dm_moments(d, lags: int) -> dict[str, np.ndarray | float]:
    """What the Diebold-Mariano test of a series pooled from parts needs of one part, in
    time order: count, sum, lagged cross-products ``sum_t d_t d_{t-k}`` (k = 0..lags) and
    the first and last ``lags`` values. `diebold_mariano_pooled` of the parts' moments
    equals `diebold_mariano` of their concatenation; a scorer that returns scalars per
    fold (scikit-learn's) can so report a DM test over all its folds."""
    d = np.asarray(d, dtype=np.float64).ravel()
    lags = int(lags)
    cross = np.array([float(d[k:] @ d[:len(d) - k]) if k < len(d) else 0.0
                      for k in range(lags + 1)])
    return {"n": float(len(d)), "sum": float(d.sum()), "cross": cross,
            "head": d[:lags].copy(), "tail": d[max(0, len(d) - lags):].copy()}


def diebold_mariano_pooled(parts: list[dict], h: int, lags: int) -> DMResult:
    """`diebold_mariano` of the concatenated parts (in order) from their `dm_moments`."""
    lags = int(lags)
    n = int(sum(p["n"] for p in parts))
    total = float(sum(p["sum"] for p in parts))
    if n < 2:
        return DMResult(float("nan"), float("nan"), n, total / n if n else float("nan"))
    mean = total / n
    cross = np.sum([p["cross"] for p in parts], axis=0)
    last = np.array([])  # the newest (up to) lags values of the parts so far
    first = np.array([])
    for p in parts:  # products of pairs that straddle a boundary between parts
        head, count = p["head"], int(p["n"])
        for k in range(1, lags + 1):
            for t in range(min(k, len(head))):
                back = k - t  # steps back from the part's start
                if back <= len(last):
                    cross[k] += head[t] * last[-back]
        whole = head if count <= lags else None
        last = np.concatenate([last, p["tail"] if whole is None else whole])[-lags:] \
            if lags else last
        if len(first) < lags:
            first = np.concatenate([first, head])[:lags]
    m = min(lags, n - 1)
    lrv = (cross[0] - n * mean ** 2) / n
    for k in range(1, m + 1):
        centred = (cross[k] - mean * (2 * total - first[:k].sum() - last[len(last) - k:].sum())
                   + (n - k) * mean ** 2)
        lrv += 2.0 * (1.0 - k / (lags + 1.0)) * centred / n
    factor_sq = (n + 1 - 2 * h + h * (h - 1) / n) / n
    if not lrv > 0 or not factor_sq > 0:
        return DMResult(float("nan"), float("nan"), n, mean)
    stat = mean / np.sqrt(lrv / n) * np.sqrt(factor_sq)
    return DMResult(float(stat), float(2.0 * stats.t.sf(abs(stat), df=n - 1)), n, mean)
