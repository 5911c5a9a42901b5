"""Metric functions against hand-computed values, and walk-forward fold gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from cbi_toolkit.evaluation import score_folds, summarise
from cbi_toolkit.metrics import (
    FoldPrediction,
    conformal_scale,
    coverage,
    crps_gaussian,
    direction_accuracy,
    interval,
    mae,
    mape,
    pinball,
)


def test_point_metrics_by_hand():
    actual = np.array([50.0, 52.0, 48.0])
    pred = np.array([51.0, 51.0, 50.0])
    assert mae(actual, pred) == pytest.approx((1 + 1 + 2) / 3)
    assert mape(actual, pred) == pytest.approx(100 * (1 / 50 + 1 / 52 + 2 / 48) / 3)


def test_direction_counts_only_moves():
    y = np.array([0.01, -0.02, 0.0, 0.03, -0.01])
    mu = np.array([0.02, 0.01, 0.05, 0.0, -0.03])
    acc, n = direction_accuracy(y, mu)
    # usable: idx 0 (hit), 1 (miss), 4 (hit); idx 2 (no move), 3 (no prediction) left out
    assert (acc, n) == (pytest.approx(2 / 3), 3)
    assert direction_accuracy(np.zeros(3), np.zeros(3))[1] == 0


def test_interval_coverage_pinball_crps_by_hand():
    mu, sigma = np.array([0.0, 0.1]), np.array([0.1, 0.2])
    lo, hi = interval(mu, sigma, 0.95)
    assert hi[0] == pytest.approx(1.959964 * 0.1, rel=1e-5)
    y = np.array([0.15, 0.1])
    assert coverage(y, lo, hi) == 1.0
    assert coverage(np.array([0.3, 0.1]), lo, hi) == 0.5
    # pinball at tau=0.9 of y=1 vs q=0: 0.9; of y=0 vs q=1: 0.1
    assert pinball(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.9) == pytest.approx(0.5)
    # CRPS of N(0,1) at 0 is 2*phi(0) - 1/sqrt(pi)
    expected = 2 * norm.pdf(0) - 1 / np.sqrt(np.pi)
    assert crps_gaussian(np.zeros(1), np.zeros(1), np.ones(1)) == pytest.approx(expected)
    # and it scales with sigma
    assert crps_gaussian(np.zeros(1), np.zeros(1), 2 * np.ones(1)) == pytest.approx(2 * expected)


def test_conformal_scale_is_a_finite_sample_quantile():
    y = np.array([0.1, -0.2, 0.3, -0.4, 0.5, 0.0, 0.05, -0.05, 0.2])
    scores = np.sort(np.abs(y))  # mu 0, sigma 1
    # n=9, level 0.8: k = ceil(10 * 0.8) = 8 -> the 8th smallest score
    assert conformal_scale(y, np.zeros(9), np.ones(9), 0.8) == scores[7]


def test_mase_is_mae_over_random_walk_on_same_fold():
    dates = pd.bdate_range("2020-01-01", periods=4)
    price = np.array([50.0, 51.0, 52.0, 53.0])
    y = np.log(np.array([51.0, 50.0, 54.0, 53.0]) / price)
    mu_model = np.log(np.array([50.5, 50.5, 53.0, 53.0]) / price)
    sigma = np.full(4, 0.02)
    preds = [FoldPrediction("model", 0, "1m", y, mu_model, sigma, price, dates),
             FoldPrediction("random_walk", 0, "1m", y, np.zeros(4), sigma, price, dates)]
    folds = score_folds(preds)
    model = folds[folds.model == "model"].iloc[0]
    rw_mae = np.mean(np.abs(np.array([51.0, 50.0, 54.0, 53.0]) - price))
    model_mae = np.mean(np.abs(np.array([51.0, 50.0, 54.0, 53.0]) - [50.5, 50.5, 53.0, 53.0]))
    assert model["mae"] == pytest.approx(model_mae)
    assert model["mase"] == pytest.approx(model_mae / rw_mae)
    assert folds[folds.model == "random_walk"].iloc[0]["mase"] == pytest.approx(1.0)
    summary = summarise(preds, folds)
    assert list(summary["model"]) == ["model", "random_walk"]
    assert summary.set_index("model").loc["model", "mase"] == pytest.approx(model_mae / rw_mae)
