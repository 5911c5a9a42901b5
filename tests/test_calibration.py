"""Choices from out-of-sample results (combination weights, sigma source, calibration)
use earlier folds only, and nothing from the test span reaches them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.calibration import (
    MODEL,
    NET,
    VOL,
    Calibration,
    Combination,
    ShippedModel,
    calibration_folds,
    combination_for,
    combine,
    fit_calibration,
    fit_combination,
)
from cbi_toolkit.evaluation import calibrations
from cbi_toolkit.metrics import FoldPrediction

H = 21


@pytest.fixture(scope="module")
def zl(data_dir) -> pd.DataFrame:
    """Real ZL closes with the 1m forward log return, a momentum signal (the trailing 1m
    return, a real if weak predictor) and the trailing 63-day volatility band."""
    px = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"],
                     index_col="date")["close"]
    logp = np.log(px)
    out = pd.DataFrame({"price": px, "y": logp.shift(-H) - logp,
                        "mom": 0.3 * (logp - logp.shift(H)),
                        "vol": logp.diff().rolling(63).std() * np.sqrt(H)}).dropna()
    return out.loc["2012":]


def fold_preds(zl: pd.DataFrame, roles: list[str], size: int = 250) -> list[FoldPrediction]:
    preds = []
    for k, role in enumerate(roles):
        part = zl.iloc[k * size:(k + 1) * size]
        args = (part["y"].to_numpy(), part["price"].to_numpy(), part.index)
        y, price, dates = args
        preds.append(FoldPrediction(NET, k, "1m", y, part["mom"].to_numpy(),
                                    np.full(len(y), 0.05), price, dates, role))
        preds.append(FoldPrediction(VOL, k, "1m", y, np.zeros(len(y)), part["vol"].to_numpy(),
                                    price, dates, role))
    return preds


ROLES = ["selection"] * 3 + ["test"] * 3


def test_calibration_folds_are_earlier_selection_folds(zl):
    preds = fold_preds(zl, ROLES)
    assert calibration_folds(preds, 0) == set()
    assert calibration_folds(preds, 2) == {0, 1}
    assert calibration_folds(preds, 3) == calibration_folds(preds, 5) == {0, 1, 2}
    assert calibration_folds(preds, None) == set(range(6))  # the final model: all history
    plain = fold_preds(zl, ["test"] * 4)  # no test_start: every fold learns from earlier ones
    assert calibration_folds(plain, 3) == {0, 1, 2}


def test_nothing_from_the_test_span_reaches_a_choice(zl):
    preds = fold_preds(zl, ROLES)
    # the test folds scored on other outcomes and forecasts (the ZL series two years on)
    later = fold_preds(zl.iloc[500:], ROLES)
    swapped = [p if p.role == "selection" else FoldPrediction(
        p.model, p.fold, p.horizon, q.y, q.mu, q.sigma, q.price, q.dates, p.role)
        for p, q in zip(preds, later, strict=True)]
    for k in (3, 4, 5):
        assert combination_for(preds, "1m", k) == combination_for(swapped, "1m", k)
    cal_a, cal_b = calibrations(preds), calibrations(swapped)
    for key, cal in cal_a.items():
        if key[2] >= 3:
            assert cal == cal_b[key], key


def test_combination_weight_follows_skill(zl):
    y = zl["y"].to_numpy()
    vol = (y, np.zeros_like(y), zl["vol"].to_numpy())
    perfect = fit_combination((y, y, np.full_like(y, 0.05)), vol)
    assert perfect.weight == 1.0
    contrary = fit_combination((y, -y, np.full_like(y, 0.05)), vol)
    assert contrary.weight == 0.0
    # a constant sigma loses to the trailing-volatility band on real data (CRPS)
    assert contrary.sigma == VOL


def test_combined_predictions_use_the_chosen_weight_and_sigma(zl):
    preds = fold_preds(zl, ROLES)
    shipped, used = combine(preds)
    assert {p.model for p in shipped} == {MODEL} and len(shipped) == len(ROLES)
    first = shipped[0]  # nothing earlier: the random walk with the volatility band
    assert used[("1m", 0)] == Combination() and np.all(first.mu == 0)
    for p in shipped[3:]:
        comb = used[("1m", p.fold)]
        net = next(q for q in preds if q.model == NET and q.fold == p.fold)
        assert np.allclose(p.mu, comb.weight * net.mu)


def test_calibration_scales_sigma_to_unit_residual_variance(zl):
    y, vol = zl["y"].to_numpy(), zl["vol"].to_numpy()
    cal = fit_calibration(y, np.zeros_like(y), 0.5 * vol)
    z = y / (cal.variance_scale * 0.5 * vol)
    assert np.mean(z ** 2) == pytest.approx(1.0)
    inside = np.mean(np.abs(z) <= cal.conformal[0.8])
    assert inside == pytest.approx(0.8, abs=0.01)


def test_shipped_model_round_trips_through_meta():
    shipping = ShippedModel({"1m": Combination(0.35, NET, 100)},
                            {"1m": Calibration(1.2, {0.8: 1.3, 0.95: 2.0}, 100)}, 42)
    back = ShippedModel.from_meta(shipping.to_meta())
    assert back == shipping
    mu, sigma, scales = back.apply(["1m"], np.array([0.02]), np.array([0.05]), np.array([0.07]))
    assert mu[0] == pytest.approx(0.007) and sigma[0] == pytest.approx(0.06)
    assert scales == {"1m": {0.8: 1.3, 0.95: 2.0}}
    # a model saved before combinations forecasts as before: the net, its conformal scales
    old = ShippedModel.from_meta({"conformal_scales": {"1m": {"0.8": 1.1, "0.95": 1.9}}})
    mu, sigma, _ = old.apply(["1m"], np.array([0.02]), np.array([0.05]), np.array([0.07]))
    assert mu[0] == pytest.approx(0.02) and sigma[0] == pytest.approx(0.05)
