"""Choices made from out-of-sample results: sigma calibration and the forecast combination.

Both are fitted on *earlier* folds only (`calibration_folds`): a test fold uses
the selection folds, a selection fold the selection folds before it. So no
choice ever sees the origins it is scored on, and with ``test_start`` nothing
from the test span reaches a choice.

* `Calibration`: sigma times a variance scale ``c`` (so that the standardised
  residuals have unit variance), and split-conformal quantiles of
  ``|y - mu| / (c * sigma)`` per interval level. Every model, the baselines
  included, is calibrated the same way, so their bands compare fairly.
  ``forecast.calibration.mode: fixed`` fits it on the selection folds once;
  ``online`` refits it at every fold (each refit of the test span) and every
  ``every`` sessions inside it on every residual realised by then -- selection
  folds, earlier test folds and the fold's own earlier origins, a residual of
  origin t at horizon h counting from t + h on (`online_path`) -- optionally
  weighting recent residuals more (``halflife``, chosen on the selection folds by
  running the same procedure across them: `choose_halflife`).
* `Combination`: the forecast the toolkit ships, ``mu = w * mu_net`` (the
  random walk predicts 0), with ``w`` on a grid in [0, 1] minimising the
  absolute error on the calibration folds -- kept only if that beats the random
  walk there with a Diebold-Mariano p below `EARN_P`, else 0 -- and sigma from
  the trailing-volatility model unless the net's sigma head beats it there on
  calibrated CRPS, again with a DM p below `EARN_P`; a test fold keeps the net's sigma
  only where it also did so out of sample on the selection folds that shipped it
  (`sigma_on_record`). ``w = 0`` with the volatility sigma means the net earned no
  place: the forecast is the random walk's mean with a calibrated trailing-volatility
  band. Each fold of the shipped model is calibrated on the earlier residuals
  standardised by the sigma it ships (`model_calibrations`).
* `widened`: with several horizons, no model's conformal band from an origin is narrower
  than its band from that origin at a shorter horizon.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from cbi_toolkit.metrics import LEVELS, FoldPrediction, conformal_scale, crps_gaussian_each
from cbi_toolkit.targets import HORIZONS
from cbi_toolkit.walkforward import SELECTION

#: the model the toolkit forecasts with, the raw network, and the sigma reference
MODEL, NET, VOL = "model", "net", "vol_random_walk"
WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)
#: the combined forecast must beat the random walk on the calibration folds at this DM p
#: (absolute errors), or the net gets no weight: a weight found by search on a few hundred
#: origins is mostly noise unless the gain is significant there
EARN_P = 0.1
FIXED, ONLINE = "fixed", "online"
#: recency half-lives (sessions) `choose_halflife` tries, from equal weights (None) to half a
#: year: shorter ones leave too few effective residuals (about 0.58 * halflife / stride) for a
#: 95% quantile
HALFLIVES: tuple[int | None, ...] = (None, 1260, 756, 504, 252, 126)
#: a calibration needs at least this many residuals (fewer: the block is not scored)
MIN_RESIDUALS = 30


@dataclass
class Calibration:
    variance_scale: float = 1.0
    conformal: dict[float, float] = field(default_factory=dict)  # level -> scale on c*sigma
    n: int = 0

    def to_json(self) -> dict:
        return {"variance_scale": self.variance_scale, "n": self.n,
                "conformal": {str(k): v for k, v in self.conformal.items()}}

    @classmethod
    def from_json(cls, doc: dict) -> Calibration:
        return cls(float(doc["variance_scale"]),
                   {float(k): float(v) for k, v in doc["conformal"].items()}, int(doc.get("n", 0)))


@dataclass
class Combination:
    weight: float = 0.0  # on the net's mean; 1 - weight on the random walk's (zero)
    sigma: str = VOL  # "net" or "vol_random_walk"
    n: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    def forecast(self, mu_net, sigma_net, sigma_vol):
        """The combined mean and the chosen (uncalibrated) sigma."""
        return self.weight * mu_net, (sigma_net if self.sigma == NET else sigma_vol)

    @classmethod
    def from_json(cls, doc: dict) -> Combination:
        return cls(float(doc["weight"]), str(doc["sigma"]), int(doc.get("n", 0)))


def calibration_folds(preds: list[FoldPrediction], fold: int | None) -> set[int]:
    """Folds whose results may inform fold ``fold`` (None: the final model, every fold)."""
    roles = {p.fold: p.role for p in preds}
    if fold is None:
        return set(roles)
    if roles.get(fold) == SELECTION or SELECTION not in roles.values():
        return {k for k in roles if k < fold}
    return {k for k, r in roles.items() if r == SELECTION}


def _pooled(preds: list[FoldPrediction], model: str, horizon: str, folds: set[int]):
    mine = [p for p in preds if p.model == model and p.horizon == horizon and p.fold in folds]
    if not mine:
        return None
    return tuple(np.concatenate([getattr(p, a) for p in mine]) for a in ("y", "mu", "sigma"))


def fit_calibration(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray,
                    weights: np.ndarray | None = None) -> Calibration:
    """Variance scale and conformal quantiles of ``(y - mu) / sigma``; with ``weights``,
    the weighted mean square and the weighted (non-exchangeable) conformal quantile."""
    if not len(y):
        return Calibration()
    z2 = ((y - mu) / sigma) ** 2
    c = float(np.sqrt(np.mean(z2) if weights is None else np.sum(weights * z2) / np.sum(weights)))
    c = c if np.isfinite(c) and c > 0 else 1.0
    if weights is None:
        scales = {lv: conformal_scale(y, mu, c * sigma, lv) for lv in LEVELS}
    else:
        scores = np.sqrt(z2) / c
        scales = {lv: weighted_conformal_scale(scores, weights, lv) for lv in LEVELS}
    return Calibration(c, scales, len(y))


def weighted_conformal_scale(scores: np.ndarray, weights: np.ndarray, level: float) -> float:
    """The ``level`` quantile of the scores weighted by ``weights``, with the new point's
    weight (1, the largest) on +inf (Barber et al. 2023, non-exchangeable split conformal);
    the largest score when that quantile is +inf. Equal weights give `conformal_scale`."""
    order = np.argsort(scores)
    cum = np.cumsum(weights[order]) / (np.sum(weights) + 1.0)
    k = int(np.searchsorted(cum, level - 1e-12))
    return float(scores[order][min(k, len(scores) - 1)])


@dataclass(frozen=True)
class Residuals:
    """One model's out-of-sample results at one horizon over every fold, with each
    origin's position among the samples' origins (consecutive sessions): its target is
    realised at ``pos + h`` (``h`` in sessions)."""

    y: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    pos: np.ndarray
    fold: np.ndarray
    role: np.ndarray
    h: int

    @property
    def realised(self) -> np.ndarray:
        return self.pos + self.h


def residuals(preds: list[FoldPrediction], model: str, horizon: str,
              origins: pd.DatetimeIndex) -> Residuals | None:
    mine = [p for p in preds if p.model == model and p.horizon == horizon]
    if not mine:
        return None
    pos = np.concatenate([origin_positions(origins, p.dates) for p in mine])
    cat = {a: np.concatenate([getattr(p, a) for p in mine]) for a in ("y", "mu", "sigma")}
    return Residuals(**cat, pos=pos, fold=np.concatenate([np.full(len(p.y), p.fold) for p in mine]),
                     role=np.concatenate([np.full(len(p.y), p.role) for p in mine]),
                     h=HORIZONS[horizon])


def origin_positions(origins: pd.DatetimeIndex, dates: pd.DatetimeIndex) -> np.ndarray:
    """Positions of ``dates`` among the samples' ``origins``; origins are consecutive rows of
    the target's data, so a residual h rows on is realised no earlier than ``pos + h``."""
    pos = origins.get_indexer(dates)
    if (pos < 0).any():
        raise ValueError("a prediction's origin is not among the samples' origins")
    return pos


def fold_starts(preds: list[FoldPrediction], origins: pd.DatetimeIndex) -> dict[int, int]:
    """Position of each fold's first origin (over every model and horizon)."""
    first: dict[int, pd.Timestamp] = {}
    for p in preds:
        if len(p.dates):
            first[p.fold] = min(first.get(p.fold, p.dates[0]), p.dates[0])
    pos = origin_positions(origins, pd.DatetimeIndex(list(first.values())))
    return dict(zip(first, pos.tolist(), strict=True))


def recency_weights(realised: np.ndarray, now: int, halflife: float | None) -> np.ndarray | None:
    """Weight 2^(-age / halflife) by sessions since the target was realised; None: equal."""
    if halflife is None:
        return None
    return 0.5 ** ((now - realised) / float(halflife))


def fit_before(res: Residuals, start: int, halflife: float | None,
               keep: np.ndarray | None = None) -> Calibration | None:
    """The calibration an origin at position ``start`` may use: every residual realised
    before it (and in ``keep``), weighted by recency."""
    usable = res.realised < start
    if keep is not None:
        usable &= keep
    if not usable.any():
        return None
    w = recency_weights(res.realised[usable], start, halflife)
    return fit_calibration(res.y[usable], res.mu[usable], res.sigma[usable], w)


@dataclass(frozen=True)
class RollingCalibration:
    """A fold's calibration refitted inside the fold: per origin (in the fold's order), the
    variance scale and conformal scales fitted at the start of its block of ``every``
    sessions on the residuals realised by then. Read like a `Calibration` by
    `cbi_toolkit.evaluation.calibrated`."""

    variance_scale: np.ndarray
    conformal: dict[float, np.ndarray]
    n: np.ndarray


@dataclass
class OnlinePath:
    """The online calibration run forward: the calibration fitted at each block start
    (None before anything was realised) and the block of each residual (-1: none)."""

    calibrations: list[Calibration | None]
    block: np.ndarray

    def of(self, idx: np.ndarray) -> Calibration | RollingCalibration | None:
        """The calibration of residuals ``idx`` (one fold, in its order): one `Calibration`
        when a single block holds them all; None when the first of them has none."""
        cals = [self.calibrations[b] if b >= 0 else None for b in self.block[idx]]
        if not cals or cals[0] is None:
            return None
        cals = [c or cals[0] for c in cals]  # (a block is never emptier than an earlier one)
        if all(c is cals[0] for c in cals):
            return cals[0]
        return RollingCalibration(np.array([c.variance_scale for c in cals]),
                                  {lv: np.array([c.conformal[lv] for c in cals]) for lv in LEVELS},
                                  np.array([c.n for c in cals]))


def online_path(res: Residuals, starts: np.ndarray, halflife: float | None,
                keep: np.ndarray | None = None) -> OnlinePath:
    """Calibrate at every block start (sorted positions) on the residuals in ``keep``
    realised before it; the block's origins use that calibration."""
    keep = np.ones(len(res.y), bool) if keep is None else keep
    block = np.searchsorted(starts, res.pos, side="right") - 1
    block[~keep] = -1
    cals = [fit_before(res, int(start), halflife, keep) for start in starts]
    return OnlinePath(cals, block)


def fold_blocks(res: Residuals, starts: dict[int, int], every: int | None) -> np.ndarray:
    """Block starts: each fold's first origin and, with ``every``, every ``every`` sessions
    after it within the fold."""
    out = []
    for fold, start in starts.items():
        last = int(res.pos[res.fold == fold].max()) if (res.fold == fold).any() else start
        out.extend(range(start, last + 1, every) if every else [start])
    return np.unique(out)


@dataclass(frozen=True)
class CalibrationPolicy:
    """How folds are calibrated: ``mode`` fixed (the selection folds) or online (everything
    realised before the fold), the recency half-life per horizon (None: equal weights), and
    ``every``: online, also recalibrate every that many sessions inside a fold."""

    mode: str = FIXED
    halflife: dict[str, float | None] = field(default_factory=dict)
    every: int | None = None

    def to_json(self) -> dict:
        return {"mode": self.mode, "halflife": dict(self.halflife), "every": self.every}

    def describe(self) -> str:
        if self.mode != ONLINE:
            return "calibration: fixed, fitted on the selection folds"
        lives = ", ".join(f"{h} {'equal weights' if v is None else f'{v} sessions'}"
                          for h, v in self.halflife.items())
        when = ("every fold" if self.every is None
                else f"every fold and every {self.every} sessions inside it")
        return (f"calibration: online, refitted {when} on the residuals realised before; "
                f"recency half-life (chosen on the selection folds): {lives}")


def calibration_for(preds: list[FoldPrediction], model: str, horizon: str, fold: int | None,
                    origins: pd.DatetimeIndex | None = None,
                    policy: CalibrationPolicy | None = None) -> Calibration | None:
    """The calibration of ``model`` at ``horizon`` for fold ``fold`` (None: the final model,
    from every residual). With ``origins`` (the samples' origin dates) only residuals
    whose targets were realised before the fold's first origin count; ``policy.mode``
    online takes them from every earlier fold, fixed from `calibration_folds` only."""
    policy = policy or CalibrationPolicy()
    if origins is None:
        if policy.mode == ONLINE:
            raise ValueError("online calibration needs the samples' origin dates")
        data = _pooled(preds, model, horizon, calibration_folds(preds, fold))
        return None if data is None else fit_calibration(*data)
    res = residuals(preds, model, horizon, origins)
    if res is None:
        return None
    start = int(res.realised.max()) + 1 if fold is None else fold_starts(preds, origins)[fold]
    if policy.mode != ONLINE:
        return fit_before(res, start, None, np.isin(res.fold, sorted(calibration_folds(preds, fold))))
    starts = fold_blocks(res, fold_starts(preds, origins), policy.every)
    if fold is None:  # the final model's: one more block, after every residual is realised
        starts = np.append(starts[starts < start], start)
    path = online_path(res, starts, policy.halflife.get(horizon))
    return path.calibrations[-1] if fold is None else path.of(np.flatnonzero(res.fold == fold))


def sourced(preds: list[FoldPrediction], horizon: str, source: str) -> list[FoldPrediction]:
    """``preds`` with the shipped model's sigma at ``horizon`` taken from ``source`` (the
    net's sigma head or the volatility band) on every fold: the residuals a fold shipped
    with that sigma is calibrated on."""
    sigma = {p.fold: p.sigma for p in preds if p.model == source and p.horizon == horizon}
    return [replace(p, sigma=sigma[p.fold]) if p.model == MODEL and p.horizon == horizon else p
            for p in preds]


def model_calibrations(preds: list[FoldPrediction], used: dict, origins: pd.DatetimeIndex,
                       policy: CalibrationPolicy) -> dict[tuple[str, str, int], object]:
    """The shipped model's calibration per ``(MODEL, horizon, fold)`` where its folds ship
    different sigmas (``used``): each fold on the earlier residuals standardised by its own
    sigma. A conformal quantile holds for the score it was fitted on, so a fold with the
    volatility band is not calibrated on the net's sigma where earlier folds used it."""
    out = {}
    for horizon in {h for h, _ in used}:
        sources: dict[str, list[int]] = {}
        for (h, k), c in used.items():
            if h == horizon:
                sources.setdefault(c.sigma, []).append(k)
        if len(sources) < 2:
            continue  # one sigma on every fold: the calibration as it is
        for source, folds in sources.items():
            rows = sourced(preds, horizon, source)
            out.update({(MODEL, horizon, k): calibration_for(rows, MODEL, horizon, k, origins, policy)
                        for k in folds})
    return out


def widened(preds: list[FoldPrediction], cals: dict) -> dict:
    """``cals`` with each model's conformal scales raised, origin by origin, so that its
    band at a horizon is never narrower (per level, in log-return units) than its band
    from the same origin at a shorter horizon. The path to the later target passes
    through the earlier one, so a narrower band there is noise in the calibrations, not
    information: fitted per horizon on a few years of overlapping outcomes, a 6m band can
    come out narrower than the 3m band from the same day. Nothing is chosen; a widened
    fold's calibration becomes per-origin (`RollingCalibration`)."""
    out = dict(cals)
    for model in {p.model for p in preds}:
        widest = {lv: pd.Series(dtype=float) for lv in LEVELS}  # origin -> width so far
        for horizon in sorted({p.horizon for p in preds if p.model == model}, key=HORIZONS.get):
            reached = {lv: [widest[lv]] for lv in LEVELS}
            for p in (q for q in preds if q.model == model and q.horizon == horizon):
                cal = cals.get((model, horizon, p.fold))
                if cal is None or not all(lv in cal.conformal for lv in LEVELS):
                    continue
                n = len(p.y)
                unit = np.broadcast_to(cal.variance_scale, n) * p.sigma
                scales = {}
                for lv in LEVELS:
                    width = np.broadcast_to(cal.conformal[lv], n) * unit
                    wide = np.fmax(width, widest[lv].reindex(p.dates).to_numpy())
                    scales[lv] = np.where(wide > width, wide / unit, cal.conformal[lv])
                    reached[lv].append(pd.Series(wide, index=p.dates))
                if any((scales[lv] != cal.conformal[lv]).any() for lv in LEVELS):
                    out[(model, horizon, p.fold)] = RollingCalibration(
                        np.broadcast_to(cal.variance_scale, n).copy(), scales,
                        np.broadcast_to(cal.n, n).copy())
            widest = {lv: pd.concat([s for s in reached[lv] if len(s)] or [widest[lv]])
                      .groupby(level=0).max() for lv in LEVELS}
    return out


def widened_half_widths(horizons: list[str], widths: np.ndarray) -> np.ndarray:
    """One origin's band half-widths per horizon (``horizons`` order), each raised to the
    widest at any shorter horizon: `widened` for the forecast from the newest origin."""
    order = np.argsort([HORIZONS[h] for h in horizons], kind="stable")
    out = np.asarray(widths, dtype=float).copy()
    out[order] = np.fmax.accumulate(out[order])
    return out


def block_coverage(res: Residuals, block: int, halflife: float | None, first: int | None = None,
                   frozen: bool = False) -> dict[float, np.ndarray]:
    """Run the online calibration across the selection folds: at every ``block``-th origin
    from ``first`` (default: the first selection origin), calibrate on the selection
    residuals realised before it and score the next ``block`` origins; per level, whether
    each scored outcome fell in its band (blocks calibrated on fewer than `MIN_RESIDUALS`
    are not scored). ``frozen``: calibrate once, at ``first`` (the fixed calibration), for
    comparison."""
    sel = res.role == SELECTION
    if not sel.any():
        return {lv: np.array([], dtype=bool) for lv in LEVELS}
    first = int(res.pos[sel].min()) if first is None else first
    starts = np.array([first]) if frozen else np.arange(first, int(res.pos[sel].max()) + 1, block)
    path = online_path(res, starts, halflife, keep=sel)
    enough = np.array([c is not None and c.n >= MIN_RESIDUALS for c in path.calibrations])
    scored = np.flatnonzero((path.block >= 0) & enough[path.block])
    cal = path.of(scored)
    if cal is None:
        return {lv: np.array([], dtype=bool) for lv in LEVELS}
    z = np.abs(res.y[scored] - res.mu[scored]) / (cal.variance_scale * res.sigma[scored])
    return {lv: z <= cal.conformal[lv] for lv in LEVELS}


def coverage_error(hits: dict[float, np.ndarray]) -> float:
    """Mean absolute gap between coverage and its level (nan when nothing was scored)."""
    if not all(len(h) for h in hits.values()):
        return float("nan")
    return float(np.mean([abs(np.mean(h) - lv) for lv, h in hits.items()]))


def choose_halflife(res: Residuals, block: int,
                    grid: tuple[int | None, ...] = HALFLIVES) -> tuple[int | None, dict[str, float]]:
    """The half-life whose online calibration across the selection folds misses the nominal
    coverage least (ties: the earlier, longer one in ``grid``), and each one's error."""
    errors = {h: coverage_error(block_coverage(res, block, h)) for h in grid}
    finite = [h for h in grid if np.isfinite(errors[h])]
    best = min(finite, key=lambda h: errors[h]) if finite else None
    return best, {("none" if h is None else str(h)): e for h, e in errors.items()}


def fit_combination(net: tuple, vol: tuple, lags: int = 0) -> Combination:
    """``net`` and ``vol``: (y, mu, sigma) of the net and the volatility random walk on the
    same origins (in time order); ``lags``: Newey-West lags of their overlapping errors."""
    from cbi_toolkit.significance import diebold_mariano

    y, mu, sigma_net = net
    _, _, sigma_vol = vol
    mae = [np.mean(np.abs(y - w * mu)) for w in WEIGHTS]
    weight = float(WEIGHTS[int(np.argmin(mae))])  # ties: the smallest weight
    if weight > 0:
        dm = diebold_mariano(np.abs(y - weight * mu), np.abs(y), lags + 1, lags=lags)
        if not (dm.stat < 0 and dm.p_value < EARN_P):
            weight = 0.0
    combined = weight * mu
    crps = {}
    for name, sigma in ((NET, sigma_net), (VOL, sigma_vol)):
        cal = fit_calibration(y, combined, sigma)
        crps[name] = crps_gaussian_each(y, combined, cal.variance_scale * sigma)
    dm = diebold_mariano(crps[NET], crps[VOL], lags + 1, lags=lags)
    source = NET if dm.stat < 0 and dm.p_value < EARN_P else VOL
    return Combination(weight, source, len(y))


def combine(preds: list[FoldPrediction], stride: int = 1) -> tuple[list[FoldPrediction], dict]:
    """The shipped model's predictions from the net's and the volatility random walk's,
    fold by fold with combinations fitted on earlier folds only; and the combination
    each fold used, ``{(horizon, fold): Combination}``."""
    used = {(p.horizon, p.fold): combination_for(preds, p.horizon, p.fold, stride)
            for p in preds if p.model == NET}
    return combined(preds, used), used


def combined(preds: list[FoldPrediction], used: dict) -> list[FoldPrediction]:
    """The shipped model's predictions under the combinations ``used`` per (horizon, fold)."""
    vols = {(p.horizon, p.fold): p for p in preds if p.model == VOL}
    out = []
    for p in preds:
        if p.model == NET:
            mu, sigma = used[(p.horizon, p.fold)].forecast(p.mu, p.sigma,
                                                           vols[(p.horizon, p.fold)].sigma)
            out.append(FoldPrediction(MODEL, p.fold, p.horizon, p.y, mu, sigma,
                                      p.price, p.dates, p.role))
    return out


def sigma_record(preds: list[FoldPrediction], cals: dict, used: dict, horizon: str,
                 roles: set[str], stride: int = 1) -> bool:
    """Whether the net's sigma held up where the shipped model used it on folds of
    ``roles``: its calibrated CRPS there, as scored (``cals``, out of sample), below the
    volatility band's on the same origins with a Diebold-Mariano p below `EARN_P`, the
    standard the sigma was chosen by. False where it was never used."""
    from cbi_toolkit.metrics import dm_lags
    from cbi_toolkit.significance import diebold_mariano

    mine = {k for (h, k), c in used.items() if h == horizon and c.sigma == NET}
    rows = sorted((p for p in preds if p.horizon == horizon and p.fold in mine
                   and p.role in roles and p.model in (MODEL, VOL)), key=lambda p: p.fold)
    if not any(p.model == MODEL for p in rows):
        return False

    def scale(p):  # the variance scale the fold was scored with (1 without a calibration)
        cal = cals[(p.model, horizon, p.fold)]
        return 1.0 if cal is None else cal.variance_scale

    crps = {m: np.concatenate([crps_gaussian_each(p.y, p.mu, scale(p) * p.sigma)
                               for p in rows if p.model == m]) for m in (MODEL, VOL)}
    lags = dm_lags(horizon, stride)
    dm = diebold_mariano(crps[MODEL], crps[VOL], lags + 1, lags=lags)
    return bool(dm.stat < 0 and dm.p_value < EARN_P)


def sigma_on_record(preds: list[FoldPrediction], cals: dict, used: dict, stride: int = 1) -> dict:
    """``used`` with the net's sigma taken back from every test fold of a horizon where it
    has no record on the selection folds (`sigma_record`): chosen in sample on a few
    selection folds, it has held less than it promised on the next one (`zl_all_quick` at
    3m and 6m), so it must first have held, significantly, on the selection folds that
    shipped it."""
    roles = {p.fold: p.role for p in preds}
    if SELECTION not in set(roles.values()):
        return used
    keep = {h: sigma_record(preds, cals, used, h, {SELECTION}, stride) for h, _ in used}
    return {(h, k): (Combination(c.weight, VOL, c.n)
                     if c.sigma == NET and not keep[h] and roles[k] != SELECTION else c)
            for (h, k), c in used.items()}


def combination_for(preds: list[FoldPrediction], horizon: str, fold: int | None,
                    stride: int = 1) -> Combination:
    from cbi_toolkit.metrics import dm_lags

    folds = calibration_folds(preds, fold)
    net, vol = _pooled(preds, NET, horizon, folds), _pooled(preds, VOL, horizon, folds)
    if net is None or vol is None:
        return Combination()  # nothing earlier to learn from: the random walk with a vol band
    return fit_combination(net, vol, dm_lags(horizon, stride))


@dataclass
class ShippedModel:
    """What turns the net's output into the forecast the toolkit ships, per horizon:
    the combination with the random walk and the calibration of its sigma. Saved with
    the model, so ``--predict`` forecasts exactly as the run did."""

    combinations: dict[str, Combination]
    calibrations: dict[str, Calibration | None]
    vol_window: int = 63  # the vol_random_walk baseline's window, which the folds scored

    def apply(self, horizons: list[str], mu_net: np.ndarray, sigma_net: np.ndarray,
              sigma_vol: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, dict[float, float]]]:
        """Mean, calibrated sigma and conformal scales per horizon at one origin."""
        mu, sigma, scales = np.empty(len(horizons)), np.empty(len(horizons)), {}
        for j, h in enumerate(horizons):
            cal = self.calibrations.get(h) or Calibration()
            mu[j], chosen = self.combination(h).forecast(mu_net[j], sigma_net[j], sigma_vol[j])
            sigma[j] = cal.variance_scale * chosen
            scales[h] = dict(cal.conformal)
        return mu, sigma, scales

    def combination(self, horizon: str) -> Combination:
        """The horizon's combination; a model saved before combinations: the net alone."""
        return self.combinations.get(horizon, Combination(1.0, NET))

    def to_meta(self) -> dict:
        return {"combination": {h: c.to_json() for h, c in self.combinations.items()},
                "calibration": {h: c.to_json() for h, c in self.calibrations.items() if c},
                "vol_window": self.vol_window}

    @classmethod
    def from_meta(cls, meta: dict) -> ShippedModel:
        if "combination" not in meta:  # a model saved before combinations: the net, conformal
            return cls({}, {h: Calibration(1.0, {float(k): v for k, v in s.items()})
                            for h, s in meta.get("conformal_scales", {}).items()})
        return cls({h: Combination.from_json(c) for h, c in meta["combination"].items()},
                   {h: Calibration.from_json(c) for h, c in meta["calibration"].items()},
                   int(meta.get("vol_window", 63)))
