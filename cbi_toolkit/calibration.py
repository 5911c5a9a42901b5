"""Choices made from out-of-sample results: sigma calibration and the forecast combination.

Both are fitted on *earlier* folds only (`calibration_folds`): a test fold uses
the selection folds, a selection fold the selection folds before it. So no
choice ever sees the origins it is scored on, and with ``test_start`` nothing
from the test span reaches a choice.

* `Calibration`: sigma times a variance scale ``c`` (so that the standardised
  residuals have unit variance), and split-conformal quantiles of
  ``|y - mu| / (c * sigma)`` per interval level. Every model, the baselines
  included, is calibrated the same way, so their bands compare fairly.
* `Combination`: the forecast the toolkit ships, ``mu = w * mu_net`` (the
  random walk predicts 0), with ``w`` on a grid in [0, 1] minimising the
  absolute error on the calibration folds -- kept only if that beats the random
  walk there with a Diebold-Mariano p below `EARN_P`, else 0 -- and sigma from
  the trailing-volatility model unless the net's sigma head beats it there on
  calibrated CRPS, again with a DM p below `EARN_P`. ``w = 0`` with the volatility
  sigma means the net earned no place: the forecast is the random walk's mean
  with a calibrated trailing-volatility band.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cbi_toolkit.metrics import LEVELS, FoldPrediction, conformal_scale, crps_gaussian_each
from cbi_toolkit.walkforward import SELECTION

#: the model the toolkit forecasts with, the raw network, and the sigma reference
MODEL, NET, VOL = "model", "net", "vol_random_walk"
WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)
#: the combined forecast must beat the random walk on the calibration folds at this DM p
#: (absolute errors), or the net gets no weight: a weight found by search on a few hundred
#: origins is mostly noise unless the gain is significant there
EARN_P = 0.1


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


def fit_calibration(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> Calibration:
    if not len(y):
        return Calibration()
    c = float(np.sqrt(np.mean(((y - mu) / sigma) ** 2)))
    c = c if np.isfinite(c) and c > 0 else 1.0
    return Calibration(c, {lv: conformal_scale(y, mu, c * sigma, lv) for lv in LEVELS}, len(y))


def calibration_for(preds: list[FoldPrediction], model: str, horizon: str,
                    fold: int | None) -> Calibration | None:
    data = _pooled(preds, model, horizon, calibration_folds(preds, fold))
    return None if data is None else fit_calibration(*data)


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
    out, used = [], {}
    nets = [p for p in preds if p.model == NET]
    vols = {(p.horizon, p.fold): p for p in preds if p.model == VOL}
    for p in nets:
        vol = vols[(p.horizon, p.fold)]
        comb = combination_for(preds, p.horizon, p.fold, stride)
        mu, sigma = comb.forecast(p.mu, p.sigma, vol.sigma)
        out.append(FoldPrediction(MODEL, p.fold, p.horizon, p.y, mu, sigma,
                                  p.price, p.dates, p.role))
        used[(p.horizon, p.fold)] = comb
    return out, used


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
