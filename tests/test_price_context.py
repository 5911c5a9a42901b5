"""Price context on windows, and the random walk with a trailing-volatility band, on real ZL data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from cbi_toolkit.dataset import load_samples
from cbi_toolkit.features.windows import Windows, WindowScaler, as_windows
from cbi_toolkit.models.baselines import VolatilityRandomWalk
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import load_spec
from cbi_toolkit.targets import HORIZONS


@pytest.fixture(scope="module")
def samples(data_dir, specs_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml",
                     overrides={"window": 20, "horizons": ["1w", "1m"]})
    _, samples = load_samples(spec, SourceContext(data_dir=data_dir))
    return samples


@pytest.fixture(scope="module")
def zl_close(data_dir) -> pd.Series:
    raw = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"])
    return raw.set_index("date")["close"].astype(float)


def test_context_is_the_log_price_at_each_origin(samples, zl_close):
    np.testing.assert_allclose(samples.X.origin_log_price, np.log(samples.price), rtol=0, atol=0)
    np.testing.assert_allclose(samples.X.origin_log_price,
                               np.log(zl_close.reindex(samples.dates).to_numpy()))


def test_history_reads_the_path_up_to_the_origin(samples, zl_close):
    sub = samples.X[np.array([0, 100, len(samples) - 1])]
    hist = sub.history(300)
    assert hist.shape == (3, 300)
    logp = np.log(zl_close)
    for i, day in enumerate(samples.dates[[0, 100, len(samples) - 1]]):
        upto = logp.loc[:day].to_numpy()[-300:]
        expected = np.concatenate([np.full(300 - len(upto), np.nan), upto])
        np.testing.assert_allclose(hist[i], expected)
    # the first origin has fewer than 300 rows before it only if the data starts late
    row0 = int(sub.ends[0])
    assert np.isnan(hist[0, : max(0, 299 - row0)]).all()


def test_history_pads_with_nan_before_the_first_row(samples):
    first = samples.X[np.array([0])]
    n = int(first.ends[0]) + 5
    hist = first.history(n)
    assert np.isnan(hist[0, :4]).all() and np.isfinite(hist[0, 4:]).all()


def test_context_survives_indexing_scaling_and_cloning(samples):
    X = samples.X[np.arange(50, 150)]
    assert X.context is samples.X.context
    scaled = WindowScaler().fit(X).transform(X)
    assert scaled.context is samples.X.context          # not scaled: it is not a feature
    np.testing.assert_array_equal(scaled.history(10), X.history(10))
    assert as_windows(np.asarray(X)).context is None


def test_context_must_match_rows(samples):
    with pytest.raises(ValueError, match="one value per row"):
        Windows(samples.X.values, samples.X.ends, samples.X.window, samples.X.context[:-1])
    with pytest.raises(ValueError, match="no price context"):
        as_windows(np.asarray(samples.X[np.arange(5)])).history(3)


def test_vol_random_walk_matches_pandas_on_the_real_file(samples, zl_close):
    lab = samples.subset(np.flatnonzero(samples.labelled))
    train, test = lab.subset(np.arange(1000)), lab.subset(np.arange(1200, 1500))
    days = (HORIZONS["1w"], HORIZONS["1m"])
    model = VolatilityRandomWalk(window=63, horizons=days).fit(train.X, train.y)
    mu, sigma = model.predict_dist(test.X)
    assert not mu.any() and mu.shape == (len(test), 2)
    returns = np.log(zl_close).diff()
    vol = returns.rolling(63).std().reindex(test.dates).to_numpy()  # ddof=1, ends at the origin
    np.testing.assert_allclose(sigma[:, 0], vol * np.sqrt(5), rtol=1e-9)
    np.testing.assert_allclose(sigma[:, 1], vol * np.sqrt(21), rtol=1e-9)


def test_vol_random_walk_in_a_pipeline(samples):
    lab = samples.subset(np.flatnonzero(samples.labelled))
    train, test = lab.subset(np.arange(800)), lab.subset(np.arange(850, 950))
    pipe = Pipeline([("scale", WindowScaler()),
                     ("model", VolatilityRandomWalk(window=21, horizons=(5, 21)))])
    pipe = clone(pipe).fit(train.X, train.y)
    mu, sigma = pipe[-1].predict_dist(pipe[:-1].transform(test.X))
    direct = VolatilityRandomWalk(window=21, horizons=(5, 21)).fit(train.X, train.y)
    np.testing.assert_array_equal(sigma, direct.predict_dist(test.X)[1])
    assert np.isfinite(sigma).all() and (sigma > 0).all()
    assert pipe.predict(test.X).shape == (len(test), 2)
    assert pipe.get_params()["model__window"] == 21


def test_vol_random_walk_checks_horizons(samples):
    lab = samples.subset(np.flatnonzero(samples.labelled)[:100])
    with pytest.raises(ValueError, match="one positive length"):
        VolatilityRandomWalk(horizons=(21,)).fit(lab.X, lab.y)
