"""Peer baselines (GARCH band, AutoARIMA, AutoETS) and the spec's baseline list, on real ZL samples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from cbi_toolkit.dataset import load_samples
from cbi_toolkit.errors import SpecError
from cbi_toolkit.features.windows import Windows
from cbi_toolkit.models.baselines import BASELINES, VolatilityRandomWalk
from cbi_toolkit.models.peers import AutoARIMA, AutoETS, GarchRandomWalk
from cbi_toolkit.pipeline import build_baselines, predict_dist
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import BASELINE_NAMES, load_spec

DAYS = (5, 21)


@pytest.fixture(scope="module")
def spec(specs_dir):
    return load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"horizons": ["1w", "1m"]})


@pytest.fixture(scope="module")
def fold(spec, data_dir):
    """A real training fold and a later test block (after a gap of the longest horizon)."""
    _, samples = load_samples(spec, SourceContext(data_dir=data_dir))
    lab = samples.subset(np.flatnonzero(samples.labelled))
    n = len(lab)
    return lab.subset(np.arange(n - 500)), lab.subset(np.arange(n - 500 + 21, n - 300))


def _truncated(X: Windows, i: int) -> Windows:
    """Origin i alone, with every row after it cut off: what was known on that day."""
    end = int(X.ends[i])
    return Windows(X.values[: end + 1], X.ends[[i]], X.window, X.context[: end + 1])


@pytest.mark.parametrize("cls", [GarchRandomWalk, AutoARIMA, AutoETS, VolatilityRandomWalk])
def test_peer_on_a_real_fold(cls, fold):
    train, test = fold
    model = clone(cls(horizons=DAYS)).fit(train.X, train.y)
    mu, sigma = model.predict_dist(test.X)
    assert mu.shape == sigma.shape == (len(test), 2)
    assert np.isfinite(mu).all() and np.isfinite(sigma).all() and (sigma > 0).all()
    realised = test.y.std(axis=0)
    # a band of the right order of magnitude for ZL's realised 1w / 1m moves
    assert (sigma.mean(axis=0) > realised / 3).all() and (sigma.mean(axis=0) < realised * 3).all()
    # longer horizons are wider
    assert (sigma[:, 1] > sigma[:, 0]).all()
    # small drifts: far below a month's move
    assert (np.abs(mu) < 0.5 * realised).all()
    np.testing.assert_array_equal(model.predict(test.X), mu)
    # causal: the same forecast from only what was known at the origin
    for i in (0, len(test) - 1):
        mu_i, sigma_i = model.predict_dist(_truncated(test.X, i))
        np.testing.assert_allclose(mu_i[0], mu[i], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(sigma_i[0], sigma[i], rtol=1e-9)


@pytest.mark.parametrize("cls", [GarchRandomWalk, AutoARIMA, AutoETS, VolatilityRandomWalk])
def test_peer_params_round_trip(cls):
    model = cls(horizons=(5, 63), window=500)
    again = clone(model)
    assert again.get_params() == model.get_params()
    assert again.set_params(window=250).get_params()["window"] == 250


def test_garch_filters_with_the_fitted_parameters(fold):
    from arch import arch_model

    train, test = fold
    model = GarchRandomWalk(horizons=DAYS).fit(train.X, train.y)
    p = model.params_
    omega, alpha, beta = p["omega"], p["alpha[1]"], p["beta[1]"]
    assert 0 < alpha and 0 < beta and alpha + beta < 1
    i = 50
    end = int(test.X.ends[i])
    r = 100 * np.diff(test.X.context[model.start_row_: end + 1])
    var = arch_model(r, mean="Zero", vol="GARCH", p=1, q=1, dist="t").fix(p).conditional_volatility ** 2
    step = [omega + alpha * r[-1] ** 2 + beta * var[-1]]   # variance of the day after the origin
    for _ in range(20):
        step.append(omega + (alpha + beta) * step[-1])     # E[sigma²] k days ahead
    expected = np.sqrt(np.cumsum(step)[[4, 20]]) / 100
    np.testing.assert_allclose(model.predict_dist(test.X[[i]])[1][0], expected, rtol=1e-8)


def test_arima_and_ets_mu_is_the_forecast_from_the_origin(fold):
    train, test = fold
    for cls in (AutoARIMA, AutoETS):
        model = cls(horizons=DAYS).fit(train.X, train.y)
        end = int(test.X.ends[10])
        path = test.X.context[: end + 1]
        out = model.model_.forward(y=path, h=21, level=[80])
        mu, _ = model.predict_dist(test.X[[10]])
        np.testing.assert_allclose(mu[0], np.asarray(out["mean"])[[4, 20]] - path[-1], rtol=1e-9)


def test_trailing_window_fits_on_recent_history(fold):
    train, test = fold
    model = GarchRandomWalk(horizons=DAYS, window=1000).fit(train.X, train.y)
    assert model.start_row_ == int(train.X.ends.max()) - 1000
    assert np.isfinite(model.predict_dist(test.X)[1]).all()


def test_spec_names_match_the_registry():
    assert set(BASELINE_NAMES) == set(BASELINES)


def test_build_baselines_from_the_spec(specs_dir, fold):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml",
                     overrides={"horizons": ["1w", "1m"], "baselines": list(BASELINE_NAMES)})
    pipes = build_baselines(spec)
    assert list(pipes) == list(BASELINE_NAMES)
    assert pipes["garch"][-1].horizons == DAYS and pipes["ridge"][-1].alpha == 10.0
    train, test = fold
    mu, sigma = predict_dist(clone(pipes["vol_random_walk"]).fit(train.X, train.y), test.X)
    assert np.isfinite(sigma).all() and not mu.any()
    assert list(build_baselines()) == ["random_walk", "drift", "ridge"]
    default = load_spec(specs_dir / "zl_1m_quick.yaml")
    assert list(build_baselines(default)) == default.baselines


def test_spec_refuses_unknown_baselines(specs_dir):
    with pytest.raises(SpecError, match="unknown baseline 'garh'.*did you mean 'garch'.*allowed: "):
        load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"baselines": ["random_walk", "garh"]})
    with pytest.raises(SpecError, match="must include random_walk"):
        load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"baselines": ["drift"]})
