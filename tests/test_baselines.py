"""Baselines on real ZL samples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import Ridge

from cbi_toolkit.dataset import load_samples
from cbi_toolkit.models.baselines import Drift, LastStepRidge, RandomWalk
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import load_spec


@pytest.fixture(scope="module")
def samples(data_dir, specs_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml",
                     overrides={"window": 20, "horizons": ["1w", "1m"]})
    _, samples = load_samples(spec, SourceContext(data_dir=data_dir))
    lab = samples.subset(np.flatnonzero(samples.labelled)[-600:])
    return lab.subset(np.arange(400)), lab.subset(np.arange(400, 600))


def test_random_walk_predicts_no_change(samples):
    train, test = samples
    model = RandomWalk().fit(train.X, train.y)
    mu, sigma = model.predict_dist(test.X)
    assert mu.shape == (len(test), 2) and not mu.any()
    np.testing.assert_allclose(sigma[0], train.y.std(axis=0, ddof=1))


def test_drift_predicts_training_mean(samples):
    train, test = samples
    model = Drift().fit(train.X, train.y)
    mu, sigma = model.predict_dist(test.X)
    np.testing.assert_allclose(mu, np.tile(train.y.mean(axis=0), (len(test), 1)), rtol=1e-6)
    np.testing.assert_allclose(sigma[-1], train.y.std(axis=0, ddof=1), rtol=1e-6)


def test_ridge_matches_sklearn_on_last_step(samples):
    train, test = samples
    model = clone(LastStepRidge(alpha=3.0)).fit(train.X, train.y)
    ref = Ridge(alpha=3.0).fit(train.X.last_step().astype(np.float64), train.y)
    expected = ref.predict(test.X.last_step().astype(np.float64))
    np.testing.assert_allclose(model.predict(test.X), expected, rtol=1e-6, atol=1e-10)
    residuals = train.y - ref.predict(train.X.last_step().astype(np.float64))
    np.testing.assert_allclose(model.predict_dist(test.X)[1][0], residuals.std(axis=0, ddof=1),
                               rtol=1e-6)


def test_baselines_fit_each_horizon_on_its_known_targets(samples):
    """Horizon mask: an unknown target is left out of that horizon's fit only; an origin
    with no known target at all is refused."""
    train, test = samples
    y = train.y.copy()
    y[-30:, 0] = np.nan  # the newest origins' first horizon not yet known
    known = np.isfinite(y[:, 0])
    assert Drift().fit(train.X, y).mean_[0] == pytest.approx(train.y[known, 0].mean())
    assert Drift().fit(train.X, y).mean_[1] == pytest.approx(train.y[:, 1].mean())
    Z = train.X.last_step().astype(np.float64)
    ref = Ridge(alpha=3.0).fit(Z[known], train.y[known, 0])
    np.testing.assert_allclose(LastStepRidge(alpha=3.0).fit(train.X, y).predict(test.X)[:, 0],
                               ref.predict(test.X.last_step().astype(np.float64)), rtol=1e-6)
    y[3, :] = np.nan
    for model in (RandomWalk(), Drift(), LastStepRidge()):
        with pytest.raises(ValueError, match="no known target"):
            model.fit(train.X, y)


def test_single_horizon_shapes(samples):
    train, test = samples
    y1 = train.y[:, :1]
    for model in (RandomWalk(), Drift(), LastStepRidge()):
        mu, sigma = model.fit(train.X, y1).predict_dist(test.X)
        assert mu.shape == sigma.shape == (len(test), 1)
