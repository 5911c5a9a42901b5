"""Causal features, targets and windows on the real ZL frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.data import load_frame, roles
from cbi_toolkit.features.registry import FEATURES, make_feature
from cbi_toolkit.features.windows import Windows, WindowScaler
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import load_spec
from cbi_toolkit.targets import HORIZONS, forward_log_returns


@pytest.fixture(scope="module")
def spec(specs_dir):
    return load_spec(specs_dir / "zl_1m.yaml")


@pytest.fixture(scope="module")
def frame(spec, data_dir):
    return load_frame(spec, SourceContext(data_dir=data_dir))


def feature(name, spec, **params):
    return make_feature(name, params, target=spec.target, roles=roles(spec))


@pytest.mark.parametrize("name", list(FEATURES))
def test_changing_the_future_leaves_the_past_unchanged(name, spec, frame):
    cut = pd.Timestamp("2015-06-01")
    future = frame.index > cut
    changed = frame.copy()
    # a perturbation of the future (a test input, not data used as prices)
    changed.loc[future] = changed.loc[future] * 1.37 + 0.5
    t = feature(name, spec)
    before = t.fit_transform(frame)
    after = t.fit_transform(changed)
    assert before.shape[1] > 0, f"{name} produced no columns on the ZL spec"
    pd.testing.assert_frame_equal(before.loc[:cut], after.loc[:cut])
    # and it really depends on the data: the future differs
    moves = name != "calendar"
    assert (not before.loc[future].equals(after.loc[future])) == moves


def test_returns_and_ma_by_hand(spec, frame):
    out = feature("returns", spec, lags=[1, 5]).fit_transform(frame)
    p = frame["zl"]
    i = 1000
    assert out["ret_5"].iloc[i] == pytest.approx(np.log(p.iloc[i] / p.iloc[i - 5]))
    ma = feature("ma", spec, windows=[10, 50]).fit_transform(frame)
    assert ma["px_ma_10"].iloc[i] == pytest.approx(np.log(p.iloc[i] / p.iloc[i - 9:i + 1].mean()))


def test_bounded_features(spec, frame):
    rsi = feature("rsi", spec).fit_transform(frame)["rsi_14"].dropna()
    assert rsi.between(0, 1).all() and rsi.std() > 0.05
    corr = feature("correlation", spec).fit_transform(frame).dropna()
    assert corr.abs().le(1 + 1e-9).all().all()
    # soybean oil moves with soybeans: a positive mean correlation
    assert corr["corr_zs_30"].mean() > 0.3


def test_feature_count_is_about_fifty(spec, frame):
    from cbi_toolkit.dataset import build_features

    assert 45 <= build_features(spec, frame).shape[1] <= 65


def test_forward_log_return_targets(frame):
    p = frame["zl"]
    y = forward_log_returns(p, {"1w": HORIZONS["1w"], "1m": HORIZONS["1m"]})
    assert y["y_1w"].iloc[100] == pytest.approx(np.log(p.iloc[105] / p.iloc[100]))
    assert y["y_1m"].iloc[-21:].isna().all() and y["y_1m"].iloc[-22:-21].notna().all()


def test_windows_are_views_gathered_by_index(frame):
    values = frame[["zl", "zs"]].to_numpy(dtype=np.float32)
    ends = np.arange(9, 300)
    win = Windows(values, ends, 10)
    sub = win[np.array([0, 5, 7])]
    assert np.shares_memory(sub.values, values)
    ref = np.lib.stride_tricks.sliding_window_view(values, 10, axis=0).transpose(0, 2, 1)
    np.testing.assert_array_equal(sub.gather(), ref[[0, 5, 7]])
    assert win.shape == (291, 10, 2)
    np.testing.assert_array_equal(win.last_step(), values[ends])


def test_scaler_fits_on_training_rows_only(frame):
    values = frame[["zl", "zs"]].to_numpy(dtype=np.float32)
    win = Windows(values, np.arange(19, len(values)), 20)
    train = win[np.arange(0, 1000)]
    scaler = WindowScaler().fit(train)
    later = values.copy()
    later[1100:] *= 3  # rows no training window reads
    scaler2 = WindowScaler().fit(Windows(later, win.ends, 20)[np.arange(0, 1000)])
    np.testing.assert_array_equal(scaler.mean_, scaler2.mean_)
    rows = values[: 1000 + 19]
    np.testing.assert_allclose(scaler.mean_, rows.mean(axis=0), rtol=1e-5)
    scaled = scaler.transform(train).gather()
    assert abs(scaled.mean()) < 0.2 and scaled.dtype == np.float32


def test_the_spec_checks_the_parameters_each_transformer_takes():
    """Spec validation reads `features.params` (no transformer imported): its names and
    defaults must be the transformers' own."""
    from cbi_toolkit.features.params import PARAMS

    assert list(PARAMS) == list(FEATURES)
    for name, cls in FEATURES.items():
        params = {k: v for k, v in cls().get_params().items() if k not in ("target", "roles")}
        assert params == PARAMS[name], name
