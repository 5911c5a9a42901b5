"""Choices from out-of-sample results (combination weights, sigma source, calibration)
use earlier folds only, and nothing from the test span reaches them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.calibration import (
    HALFLIVES,
    MODEL,
    NET,
    ONLINE,
    VOL,
    Calibration,
    CalibrationPolicy,
    Combination,
    ShippedModel,
    calibration_folds,
    calibration_for,
    combination_for,
    combine,
    combined,
    fit_calibration,
    fit_combination,
    model_calibrations,
    sigma_on_record,
    sigma_record,
    weighted_conformal_scale,
    widened,
    widened_half_widths,
)
from cbi_toolkit.errors import SpecError
from cbi_toolkit.evaluation import calibrated, calibrations, score_folds
from cbi_toolkit.forecast import forecast_frame
from cbi_toolkit.metrics import FoldPrediction, conformal_scale
from cbi_toolkit.skill import calibration_policy, score_predictions
from cbi_toolkit.spec import load_spec

H = 21
SPEC = "specs/zl_1m_quick.yaml"


@pytest.fixture(scope="module")
def zl(data_dir) -> pd.DataFrame:
    """Real ZL closes with the 1m forward log return, a momentum signal (the trailing 1m
    return, a real if weak predictor) and the trailing 63-day (and 126-day) volatility band."""
    px = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"],
                     index_col="date")["close"]
    logp = np.log(px)
    out = pd.DataFrame({"price": px, "y": logp.shift(-H) - logp,
                        "mom": 0.3 * (logp - logp.shift(H)),
                        "vol": logp.diff().rolling(63).std() * np.sqrt(H),
                        "vol126": logp.diff().rolling(126).std() * np.sqrt(H)}).dropna()
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
    # the online calibration's half-life is chosen on the selection folds only
    spec, origins = load_spec(SPEC), zl.index
    shipped_a, shipped_b = combine(preds)[0] + preds, combine(swapped)[0] + swapped
    policy = calibration_policy(spec, shipped_a, origins)
    assert policy[0].mode == ONLINE and policy == calibration_policy(spec, shipped_b, origins)


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


def _swap_y(preds: list[FoldPrediction], which, source: pd.DataFrame) -> list[FoldPrediction]:
    """``preds`` with the outcome at origins where ``which(pred, positions)`` is true replaced
    by the real ZL outcome two years later (another real outcome, same origin dates)."""
    later = source["y"].to_numpy()
    out = []
    for p in preds:
        pos = source.index.get_indexer(p.dates)
        y = np.where(which(p, pos), later[(pos + 500) % len(later)], p.y)
        out.append(FoldPrediction(p.model, p.fold, p.horizon, y, p.mu, p.sigma, p.price,
                                  p.dates, p.role))
    return out


@pytest.mark.parametrize("halflife", [None, 252])
def test_online_calibration_uses_only_realised_residuals(zl, halflife):
    preds, origins = fold_preds(zl, ROLES), zl.index  # consecutive real sessions
    policy = CalibrationPolicy(ONLINE, {"1m": halflife})
    start = 4 * 250  # test fold 4's first origin: a residual counts if its target is realised
    # before it (origin position + 21 < start); fold 3's last 21 origins are not yet realised
    def cal(ps, fold=4):
        return calibration_for(ps, VOL, "1m", fold, origins, policy)
    base = cal(preds)
    assert base.n == start - H  # every realised residual, from selection and earlier test folds
    unrealised = _swap_y(preds, lambda p, pos: pos + H >= start, zl)
    assert cal(unrealised) == base
    just_realised = _swap_y(preds, lambda p, pos: pos + H == start - 1, zl)
    assert cal(just_realised) != base  # the check can fail: the last realised one counts
    # the final model's calibration uses every residual, the newest included
    newest = _swap_y(preds, lambda p, pos: pos == pos.max(), zl)
    assert cal(newest, None) != cal(preds, None) and cal(preds, None).n == len(ROLES) * 250


def test_fixed_calibration_skips_unrealised_selection_residuals(zl):
    preds, origins = fold_preds(zl, ROLES), zl.index
    fixed = calibration_for(preds, VOL, "1m", 2, origins)  # selection folds 0, 1 before fold 2
    assert fixed.n == 2 * 250 - H
    assert calibration_for(preds, VOL, "1m", 4, origins).n == 3 * 250  # the test span: all


def test_weighted_conformal_quantile(zl):
    scores = np.abs(zl["y"].to_numpy() / zl["vol"].to_numpy())[:400]
    for level in (0.8, 0.95):
        assert weighted_conformal_scale(scores, np.ones(400), level) == pytest.approx(
            conformal_scale(scores, np.zeros(400), np.ones(400), level))
    # weightless scores do not count: {3, 4} and the new point's +inf, a third each
    scores, weights = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 1.0, 1.0])
    assert weighted_conformal_scale(scores, weights, 0.3) == 3.0
    assert weighted_conformal_scale(scores, weights, 0.5) == 4.0


def test_scored_folds_and_shipped_model_use_the_online_calibration(zl):
    spec, origins = load_spec(SPEC), zl.index
    preds = fold_preds(zl, ROLES)
    result = score_predictions(spec, preds, {NET: [0.0] * 6, VOL: [0.0] * 6}, origins)
    halflife = result.policy.halflife["1m"]
    assert result.policy.mode == ONLINE and halflife in HALFLIVES
    model = [p for p in result.predictions if p.model == MODEL]
    pos = np.concatenate([origins.get_indexer(p.dates) for p in model])
    y, mu, sigma = (np.concatenate([getattr(p, a) for p in model]) for a in ("y", "mu", "sigma"))

    def by_hand(now):
        ok = pos + H < now
        w = None if halflife is None else 0.5 ** ((now - pos[ok] - H) / halflife)
        return fit_calibration(y[ok], mu[ok], sigma[ok], w)
    every = spec.forecast.calibration.every  # the default: recalibrated inside the fold
    assert result.policy.every == every == 5
    for fold in (4, 5):
        cal = result.calibrations[(MODEL, "1m", fold)]
        starts = fold * 250 + np.arange(250) // every * every
        for i in (0, 7, 249):
            expected = by_hand(starts[i])
            assert cal.variance_scale[i] == expected.variance_scale and cal.n[i] == expected.n
            assert {lv: q[i] for lv, q in cal.conformal.items()} == expected.conformal
    assert result.shipped().calibrations["1m"] == by_hand(pos.max() + H + 1)
    assert set(result.calibration_all()) == {f"{m}/1m" for m in (MODEL, NET, VOL)}


def test_rolling_calibration_refits_inside_a_fold_on_realised_residuals(zl):
    preds, origins = fold_preds(zl, ROLES), zl.index
    every, start = 63, 4 * 250
    rolling = CalibrationPolicy(ONLINE, {"1m": None}, every)
    cal = calibration_for(preds, VOL, "1m", 4, origins, rolling)
    once = calibration_for(preds, VOL, "1m", 4, origins, CalibrationPolicy(ONLINE, {"1m": None}))
    blocks = start + np.arange(250) // every * every
    # each origin's calibration is the one fitted at its block's first session
    assert cal.n.tolist() == (blocks - H).tolist()
    assert cal.variance_scale[0] == once.variance_scale
    assert cal.conformal[0.8][0] == once.conformal[0.8]
    last = blocks[-1]
    vol = [p for p in preds if p.model == VOL]
    y, mu, sigma = (np.concatenate([getattr(p, a) for p in vol]) for a in ("y", "mu", "sigma"))
    by_hand = fit_calibration(y[:last - H], mu[:last - H], sigma[:last - H])
    assert cal.variance_scale[-1] == by_hand.variance_scale
    assert cal.conformal[0.95][-1] == by_hand.conformal[0.95]
    # outcomes not realised before the last block's start leave it as it is
    unrealised = _swap_y(preds, lambda p, pos: pos + H >= last, zl)
    swapped = calibration_for(unrealised, VOL, "1m", 4, origins, rolling)
    assert swapped.variance_scale[-1] == cal.variance_scale[-1]
    just_realised = _swap_y(preds, lambda p, pos: pos + H == last - 1, zl)
    moved = calibration_for(just_realised, VOL, "1m", 4, origins, rolling)
    assert moved.variance_scale[-1] != cal.variance_scale[-1]  # the last realised one counts
    assert moved.variance_scale[0] == cal.variance_scale[0]  # not yet realised at the fold start
    # the fold's bands follow the per-origin scales
    fold4 = next(p for p in vol if p.fold == 4)
    bands = calibrated(fold4, cal)
    np.testing.assert_allclose(bands["hi_80"], cal.conformal[0.8] * cal.variance_scale * fold4.sigma)


def test_rolling_calibration_is_online_only():
    with pytest.raises(SpecError, match="every recalibrates the online calibration"):
        load_spec(SPEC, {"forecast.calibration.mode": "fixed", "forecast.calibration.every": 21})


def _with_net_sigma(preds: list[FoldPrediction], sigma_of) -> list[FoldPrediction]:
    return [FoldPrediction(p.model, p.fold, p.horizon, p.y, p.mu, sigma_of(p), p.price, p.dates,
                           p.role) if p.model == NET else p for p in preds]


def _shipped_scored(preds: list[FoldPrediction], used: dict, origins):
    """The shipped rows under ``used``, their calibrations (each fold on its own sigma) and
    per-fold scores, as `score_predictions` builds them."""
    shipped = combined(preds, used)
    policy = CalibrationPolicy(ONLINE, {"1m": None})
    cals = calibrations(shipped + preds, origins, policy)
    cals |= model_calibrations(shipped + preds, used, origins, policy)
    return shipped + preds, cals


@pytest.mark.parametrize("informed", [False, True])
def test_the_nets_sigma_needs_a_record_on_the_selection_folds(zl, informed):
    # the net's sigma is used from selection fold 1 on; one that knows the size of the real ZL
    # outcome beats the trailing volatility band, one that has it backwards loses to it
    size = (lambda p: np.abs(p.y) + 0.01) if informed else (lambda p: 1e-3 / (np.abs(p.y) + 0.01))
    preds = _with_net_sigma(fold_preds(zl, ROLES), size)
    used = {(p.horizon, p.fold): Combination(0.0, NET if p.fold >= 1 else VOL)
            for p in preds if p.model == NET}
    rows, cals = _shipped_scored(preds, used, zl.index)
    checked = sigma_on_record(rows, cals, used)
    assert sigma_record(rows, cals, used, "1m", {"selection"}) is informed
    for (_, k), c in checked.items():
        role = ROLES[k]
        expected = NET if k >= 1 and (informed or role == "selection") else VOL
        assert c.sigma == expected, (k, role)
    # the test folds' outcomes (swapped for the real ones two years later) do not reach it
    later = _swap_y(rows, lambda p, pos: np.full(len(pos), p.role == "test"), zl)
    _, cals_later = _shipped_scored(later, used, zl.index)
    assert cals_later[(MODEL, "1m", 5)] != cals[(MODEL, "1m", 5)]
    assert sigma_on_record(later, cals_later, used) == checked
    plain = fold_preds(zl, ["test"] * 4)  # no selection folds: nothing to take back
    assert sigma_on_record(plain, calibrations(plain), used) == used


def test_a_record_within_noise_is_no_record(zl):
    # a net sigma from the trailing 126-session volatility beats the 63-session band on average
    # on the two selection folds that used it (CRPS 0.991 of it), but not by a Diebold-Mariano
    # p below EARN_P (0.18): the test folds ship the band
    vol126 = zl["vol126"]
    preds = _with_net_sigma(fold_preds(zl, ROLES), lambda p: vol126.loc[p.dates].to_numpy())
    used = {(p.horizon, p.fold): Combination(0.0, NET if p.fold >= 1 else VOL)
            for p in preds if p.model == NET}
    rows, cals = _shipped_scored(preds, used, zl.index)
    folds = score_folds(rows, cals)
    record = folds[folds["fold"].isin([1, 2])].groupby("model")["crps_cal"].mean()
    assert record[MODEL] < record[VOL]
    assert not sigma_record(rows, cals, used, "1m", {"selection"})
    assert {k for (_, k), c in sigma_on_record(rows, cals, used).items() if c.sigma == NET} == {1, 2}


def test_each_fold_is_calibrated_on_the_sigma_it_ships(zl):
    # selection folds 1 and 2 ship the net's sigma (a constant, unlike the band), the rest the
    # volatility band, with w = 0: a fold with the band gets exactly the band's calibration,
    # and a fold with the net's sigma the calibration of the net's standardised residuals
    preds, origins = fold_preds(zl, ROLES), zl.index
    used = {(p.horizon, p.fold): Combination(0.0, NET if p.fold in (1, 2) else VOL)
            for p in preds if p.model == NET}
    rows, cals = _shipped_scored(preds, used, origins)
    for k in (3, 4, 5):
        assert cals[(MODEL, "1m", k)] == cals[(VOL, "1m", k)]
    net_sigma = [FoldPrediction(MODEL, p.fold, p.horizon, p.y, 0 * p.mu, p.sigma, p.price, p.dates,
                                p.role) for p in preds if p.model == NET]
    policy = CalibrationPolicy(ONLINE, {"1m": None})
    by_hand = calibration_for(net_sigma, MODEL, "1m", 2, origins, policy)
    assert cals[(MODEL, "1m", 2)] == by_hand
    mixed = calibrations(rows, origins, policy)[(MODEL, "1m", 3)]  # the pool of both sigmas
    assert mixed.variance_scale != cals[(MODEL, "1m", 3)].variance_scale


def _band_at(zl: pd.DataFrame, horizon: str, steps: int, rows: slice) -> FoldPrediction:
    """The volatility band's prediction at ``horizon`` on real ZL origins ``rows``: no change,
    the trailing 63-session volatility times sqrt(steps) (the 1m column's y, unused here)."""
    part = zl.iloc[rows]
    daily = part["vol"].to_numpy() / np.sqrt(H)
    return FoldPrediction(VOL, 0, horizon, part["y"].to_numpy(), np.zeros(len(part)),
                          daily * np.sqrt(steps), part["price"].to_numpy(), part.index, "test")


def test_no_band_is_narrower_than_a_shorter_horizons_from_the_same_origin(zl):
    # fitted per horizon, the 3m calibration's scales would give a band narrower than the
    # 1m band from the same day at both levels (0.5 * sqrt(63) < 1.3 * sqrt(21)); widened,
    # the 3m band is the 1m band's width on the origins both have, and no wider
    short, long_ = _band_at(zl, "1m", 21, slice(0, 250)), _band_at(zl, "3m", 63, slice(0, 200))
    cal_1m, cal_3m = Calibration(1.0, {0.8: 1.3, 0.95: 2.0}), Calibration(1.0, {0.8: 0.5, 0.95: 1.0})
    cals = {(VOL, "1m", 0): cal_1m, (VOL, "3m", 0): cal_3m}
    out = widened([long_, short], cals)
    assert out[(VOL, "1m", 0)] is cal_1m  # the shortest horizon is never touched
    wide, narrow, ref = (calibrated(long_, out[(VOL, "3m", 0)]), calibrated(long_, cal_3m),
                         calibrated(short, cal_1m))
    for pct in (80, 95):
        assert (narrow[f"hi_{pct}"] < ref[f"hi_{pct}"][:200]).all()
        np.testing.assert_allclose(wide[f"hi_{pct}"], ref[f"hi_{pct}"][:200])
        np.testing.assert_allclose(wide[f"lo_{pct}"], ref[f"lo_{pct}"][:200])
    np.testing.assert_array_equal(wide["sigma_cal"], narrow["sigma_cal"])  # CRPS as it was
    # a 3m calibration already wider than the 1m band is kept as it is
    wider = Calibration(1.0, {0.8: 1.0, 0.95: 1.5})
    assert widened([short, long_], cals | {(VOL, "3m", 0): wider})[(VOL, "3m", 0)] is wider


def test_the_newest_forecast_widens_as_the_backtest_was_scored():
    # 6m's conformal scales give a band narrower than 3m's: the forecast's 6m band takes the
    # 3m band's width, the others keep their own, and Gaussian bands are left as they are
    horizons, sigma = ["1w", "1m", "3m", "6m", "12m"], 0.02 * np.sqrt([5, 21, 63, 126, 252])
    scales = {h: {0.8: 1.3, 0.95: 2.0} for h in horizons} | {"6m": {0.8: 0.6, 0.95: 1.0}}
    frame = forecast_frame(pd.Timestamp("2023-12-29"), 47.6, horizons, np.zeros(5), sigma,
                           "conformal", scales, "v", "r", pd.Timestamp.now(tz="UTC"), "zl")
    half = np.log(frame["upper_80"] / 47.6).to_numpy()
    np.testing.assert_allclose(half, 1.3 * sigma * [1, 1, 1, 0, 1] + [0, 0, 0, 1.3 * sigma[2], 0])
    assert (np.diff(np.log(frame["upper_95"] / frame["lower_95"])) >= 0).all()
    assert widened_half_widths(["6m", "1m"], np.array([0.1, 0.2])).tolist() == [0.2, 0.2]
    gauss = forecast_frame(pd.Timestamp("2023-12-29"), 47.6, horizons, np.zeros(5),
                           sigma * [1, 1, 1, 0.5, 1], "gaussian", None, "v", "r",
                           pd.Timestamp.now(tz="UTC"), "zl")
    assert gauss["upper_80"][3] < gauss["upper_80"][2]
