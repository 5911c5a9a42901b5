"""scikit-learn conventions every estimator keeps: ``fit`` returns self, ``predict`` before
``fit`` (or on a clone of a fitted one) raises NotFittedError, parameters round-trip, one
name per setting, ``fit`` leaves torch's global random state alone, a fitted estimator
pickles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from cbi_toolkit.backtest import labelled_samples
from cbi_toolkit.models.baselines import (
    Drift,
    LastStepRidge,
    RandomWalk,
    VolatilityRandomWalk,
)
from cbi_toolkit.models.peers import AutoARIMA, AutoETS, GarchRandomWalk
from cbi_toolkit.models.regressor import ForecastRegressor
from cbi_toolkit.run.prepare import prepare
from cbi_toolkit.spec import load_spec

ESTIMATORS = {
    "net": lambda: ForecastRegressor(module__hidden_dim=8, module__num_layers=1,
                                     module__num_heads=2, max_epochs=1, batch_size=256,
                                     verbose=0, device="cpu"),
    "random_walk": RandomWalk, "drift": Drift, "ridge": LastStepRidge,
    "vol_random_walk": lambda: VolatilityRandomWalk(horizons=(21,)),
    "garch": lambda: GarchRandomWalk(horizons=(21,)),
    "auto_arima": lambda: AutoARIMA(horizons=(21,), window=500),
    "auto_ets": lambda: AutoETS(horizons=(21,), window=500),
}


@pytest.fixture(scope="module")
def data(specs_dir, data_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"window": 20})
    _, samples = prepare(spec, str(data_dir))
    lab = labelled_samples(samples)
    n = len(lab)
    return lab.subset(np.arange(n - 700, n - 100)), lab.subset(np.arange(n - 5, n))


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_sklearn_conventions(name, data):
    train, test = data
    est = ESTIMATORS[name]()
    with pytest.raises(NotFittedError):
        est.predict(test.X)
    params = est.get_params()
    assert clone(est).get_params().keys() == params.keys()
    assert est.set_params(**{k: v for k, v in params.items() if "__" not in k}) is est
    deep = est.get_params(deep=True)
    again = clone(est).set_params(**deep).get_params(deep=True)
    assert again.keys() == deep.keys()
    assert all(again[k] is deep[k] or again[k] == deep[k] for k in deep)
    # one name per setting: patience and warm-up are the estimator's, not its callbacks'
    assert not any(k.startswith("callbacks__") for k in deep), sorted(deep)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert est.fit(train.X, train.y) is est
    assert torch.equal(torch.rand(3), expected)  # fit seeds its own generator, not torch's
    mu, sigma = est.predict_dist(test.X)
    assert mu.shape == sigma.shape == (len(test), 1) and np.isfinite(mu).all() and (sigma > 0).all()
    with pytest.raises(NotFittedError):  # a clone keeps the parameters, not the fit
        clone(est).predict(test.X)
    back = pickle.loads(pickle.dumps(est))
    mu_back, sigma_back = back.predict_dist(test.X)
    np.testing.assert_allclose(mu_back, mu, rtol=1e-6)
    np.testing.assert_allclose(sigma_back, sigma, rtol=1e-6)
