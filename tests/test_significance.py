"""Diebold–Mariano, direction, coverage and interval-score tests against hand-computed /
textbook values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cbi_toolkit.significance import (
    coverage_test,
    diebold_mariano,
    diebold_mariano_pooled,
    direction_test,
    dm_moments,
    hln_factor,
    interval_score,
    newey_west_variance,
)


def test_dm_hand_computed_example():
    # d = model - ref = [2, 0, 2, 0, 3]; n = 5, mean 1.4
    # e = d - 1.4 = [0.6, -1.4, 0.6, -1.4, 1.6]
    # gamma_0 = (0.36 + 1.96 + 0.36 + 1.96 + 2.56) / 5 = 7.2 / 5 = 1.44
    # gamma_1 = (-0.84 - 0.84 - 0.84 - 2.24) / 5 = -4.76 / 5 = -0.952
    # Newey-West, 1 lag: 1.44 + 2 * (1 - 1/2) * (-0.952) = 0.488
    # DM = 1.4 / sqrt(0.488 / 5); HLN (h = 2): sqrt((5 + 1 - 4 + 2/5) / 5) = sqrt(0.48)
    model = [3.0, 1.0, 4.0, 2.0, 5.0]
    ref = [1.0, 1.0, 2.0, 2.0, 2.0]
    assert newey_west_variance(np.array([2.0, 0, 2, 0, 3]), 1) == pytest.approx(0.488)
    res = diebold_mariano(model, ref, h=2)
    expected = 1.4 / math.sqrt(0.488 / 5) * math.sqrt(0.48)
    assert res.n == 5 and res.mean_diff == pytest.approx(1.4)
    assert res.stat == pytest.approx(expected, rel=1e-12)
    # Student t with n - 1 = 4 df has a closed-form cdf:
    # F(t) = 1/2 + (3/4) u - (1/4) u^3,  u = t / sqrt(4 + t^2)
    t = expected
    u = t / math.sqrt(4 + t * t)
    cdf = 0.5 + 0.75 * u - 0.25 * u ** 3
    assert res.p_value == pytest.approx(2 * (1 - cdf), rel=1e-9)
    # the sign: the model's loss is larger, so the statistic is positive; swapped, negative
    flipped = diebold_mariano(ref, model, h=2)
    assert flipped.stat == pytest.approx(-expected) and flipped.p_value == pytest.approx(res.p_value)


def test_t4_cdf_formula_is_right():
    # guards the closed form used above
    for t in (0.3, 1.0, 3.1):
        u = t / math.sqrt(4 + t * t)
        assert 0.5 + 0.75 * u - 0.25 * u ** 3 == pytest.approx(stats.t.cdf(t, 4), rel=1e-12)


def test_hln_factor_formula():
    assert hln_factor(5, 2) == pytest.approx(math.sqrt(0.48))
    assert hln_factor(100, 21) == pytest.approx(math.sqrt((100 + 1 - 42 + 21 * 20 / 100) / 100))
    assert hln_factor(50, 1) == pytest.approx(math.sqrt(49 / 50))


def _real_losses(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """Squared 1-day errors of no-change vs a trailing 20-day mean, on the real ZL file."""
    close = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv")["close"].astype(float)
    r = np.log(close).diff()
    trailing = r.rolling(20).mean().shift(1)
    ok = r.notna() & trailing.notna()
    return (r[ok] ** 2).to_numpy(), ((r - trailing)[ok] ** 2).to_numpy()


def test_dm_with_h1_is_the_paired_t_test(data_dir):
    a, b = _real_losses(data_dir)
    a, b = a[-500:], b[-500:]
    res = diebold_mariano(a, b, h=1)
    ref = stats.ttest_1samp(a - b, 0.0)
    assert res.n == 500
    assert res.stat == pytest.approx(ref.statistic, rel=1e-10)
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-8)


def test_dm_hac_lags_change_the_variance_only(data_dir):
    a, b = _real_losses(data_dir)
    a, b = a[-300:], b[-300:]
    plain, hac = diebold_mariano(a, b, h=1), diebold_mariano(a, b, h=1, lags=5)
    assert hac.mean_diff == plain.mean_diff
    d = a - b
    expected = d.mean() / math.sqrt(newey_west_variance(d, 5) / 300) * hln_factor(300, 1)
    assert hac.stat == pytest.approx(expected, rel=1e-12) and hac.stat != plain.stat


@pytest.mark.parametrize("lags", [0, 3, 12])
@pytest.mark.parametrize("cuts", [[150], [40, 43, 47, 200], [100, 200, 299]])
def test_dm_pooled_from_parts_equals_dm_of_the_whole(data_dir, lags, cuts):
    """Moments per part (a grid fold) give the DM test of the concatenation, also when a
    part is shorter than the lags (its pairs straddle two boundaries)."""
    a, b = _real_losses(data_dir)
    a, b = a[-300:], b[-300:]
    whole = diebold_mariano(a, b, lags + 1, lags=lags)
    parts = [dm_moments(d, lags) for d in np.split(a - b, cuts)]
    pooled = diebold_mariano_pooled(parts, lags + 1, lags)
    assert pooled.n == whole.n == 300
    assert pooled.stat == pytest.approx(whole.stat, rel=1e-10)
    assert pooled.p_value == pytest.approx(whole.p_value, rel=1e-8)


def test_dm_drops_nan_pairs_and_guards_zero_variance():
    res = diebold_mariano([1.0, np.nan, 2.0, 4.0], [0.0, 1.0, 1.0, 1.0], h=1)
    assert res.n == 3
    same = diebold_mariano([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], h=1)   # d constant
    assert same.n == 3 and same.mean_diff == 1.0
    assert math.isnan(same.stat) and math.isnan(same.p_value)
    with pytest.raises(ValueError, match="differ in length"):
        diebold_mariano([1.0, 2.0], [1.0], h=1)


def test_direction_test_against_exact_binomial_sum():
    y = np.array([0.1, 0.2, -0.1, 0.3, -0.2, 0.05, 0.0, 0.4, -0.3, 0.2, 0.1, -0.1])
    mu = np.array([0.1, 0.1, -0.1, 0.1, 0.1, 0.1, 0.1, 0.0, -0.1, 0.1, -0.1, -0.1])
    # moved: all but index 6 (y = 0) and 7 (mu = 0): n = 10
    # hits at 0, 1, 2, 3, 5, 8, 9, 11 = 8; up-moves 0,1,3,5,9,10 = 6 -> b = 0.6
    # predicted up 0,1,3,4,5,9 = 6 -> q = 0.6; p0 = 0.36 + 0.16 = 0.52
    res = direction_test(y, mu)
    assert (res.n, res.accuracy, res.base_rate) == (10, 0.8, pytest.approx(0.6))
    p0 = 0.6 * 0.6 + 0.4 * 0.4
    exact = sum(math.comb(10, k) * p0 ** k * (1 - p0) ** (10 - k) for k in range(8, 11))
    assert res.p_value == pytest.approx(exact, rel=1e-10)
    assert res.p_value == pytest.approx(
        stats.binomtest(8, 10, p0, alternative="greater").pvalue, rel=1e-12)


def test_direction_test_no_moves():
    res = direction_test([0.0, 0.1], [0.2, 0.0])
    assert res.n == 0 and math.isnan(res.p_value)


def test_interval_score_by_hand():
    # alpha 0.2, interval [-0.2, 0.3] (width 0.5):
    # y = 0 inside: 0.5; y = 0.5 above by 0.2: 0.5 + 10 * 0.2 = 2.5; y = -0.4 below by 0.2: 2.5
    y = np.array([0.0, 0.5, -0.4])
    score = interval_score(y, np.full(3, -0.2), np.full(3, 0.3), alpha=0.2)
    assert score == pytest.approx((0.5 + 2.5 + 2.5) / 3)
    with pytest.raises(ValueError, match="alpha"):
        interval_score(y, y, y, alpha=1.5)


def test_coverage_test_without_lags_is_the_wald_test_of_a_proportion():
    inside = np.r_[np.ones(150), np.zeros(50)]  # 150 of 200 outcomes inside an 80% band
    res = coverage_test(inside, 0.80)
    assert res.coverage == 0.75 and res.n == 200
    assert res.se == pytest.approx(math.sqrt(0.75 * 0.25 / 200), rel=1e-12)
    z = (0.80 - 0.75) / math.sqrt(0.75 * 0.25 / 200)  # 1.633
    assert res.p_value == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-10)  # 0.1025
    assert coverage_test(np.r_[np.ones(160), np.zeros(40)], 0.80).p_value == pytest.approx(1.0)


def test_coverage_test_overlapping_hits_widen_the_error(data_dir):
    """Hits of a trailing-volatility band on real ZL 3-month outcomes, scored daily: the
    outcomes of neighbouring origins overlap, so with the horizon's lags the standard
    error is several times the binomial one and the same miss is less significant."""
    zl = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv")["close"].to_numpy()
    lp = np.log(zl)
    r = np.diff(lp)
    t = np.arange(63, len(lp) - 63)
    vol = np.array([r[i - 63:i].std(ddof=1) for i in t])
    inside = np.abs(lp[t + 63] - lp[t]) <= 1.2816 * vol * math.sqrt(63)
    plain, hac = coverage_test(inside, 0.80), coverage_test(inside, 0.80, lags=62)
    assert hac.coverage == plain.coverage
    assert hac.se > 3 * plain.se and hac.p_value > plain.p_value
    assert hac.se == pytest.approx(math.sqrt(newey_west_variance(inside.astype(float), 62)
                                             / len(inside)), rel=1e-12)
