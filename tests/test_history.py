"""Extra training history (`Spec.history`): the Quandl second month before the front month's
data, as training windows for the net only -- its own returns, never the target's level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.errors import SpecError
from cbi_toolkit.models.regressor import TailSplit
from cbi_toolkit.pipeline import build_pipeline
from cbi_toolkit.run.prepare import prepare
from cbi_toolkit.spec import load_spec

SPEC = "specs/zl_1m_quick_history.yaml"
BO2 = "zl/zl_quandl_CHRIS_CME_BO2_daily.csv"


@pytest.fixture(scope="module")
def samples(data_dir):
    spec = load_spec(SPEC, overrides={"history.start": "2000-01-01"})  # a small history
    return spec, prepare(spec, str(data_dir))[1]


def test_history_windows_are_the_second_month_before_the_target(samples, data_dir):
    spec, s = samples
    h = s.history
    bo2 = pd.read_csv(data_dir / BO2, parse_dates=["date"], index_col="date")["settle"]
    front = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"],
                        index_col="date")["close"]
    assert len(h) > 500 and h.dates[0] >= pd.Timestamp("2000-01-01")
    # every history target is realised (21 of the second month's rows on) before the front
    # month's first date, and is the second month's own forward log return
    pos = bo2.index.get_indexer(h.dates)
    assert (pos >= 0).all() and bo2.index[pos + 21].max() < front.index[0]
    expected = np.log(bo2.to_numpy()[pos + 21] / bo2.to_numpy()[pos])
    assert np.allclose(h.y[:, 0], expected) and np.allclose(h.price, bo2.to_numpy()[pos])
    # features of the target's own prices come from the second month; drivers' are missing
    last = h.X.last_step()
    ret_1 = last[:, h.feature_names.index("ret_1")]
    assert np.allclose(ret_1, np.log(bo2.to_numpy()[pos] / bo2.to_numpy()[pos - 1]), atol=1e-6)
    assert np.isnan(last[:, h.feature_names.index("zs_chg_1")]).all()
    assert h.feature_names == s.feature_names and s.dates[0] > h.dates[-1]


def test_training_set_history_first_scaled_in_the_fold_never_in_the_tail(samples):
    spec, s = samples
    h, rows = s.history, np.arange(300)
    X, y = s.training_set(rows, valid_fraction=spec.training.valid_fraction)
    assert len(X) == len(h) + 300 and np.array_equal(y[-300:], s.y[rows])
    assert np.array_equal(y[:len(h)], h.y)
    _, valid = TailSplit(spec.training.valid_fraction, spec.max_horizon).indices(len(y))
    assert valid.min() >= len(h)  # the net validates on the target's own origins only
    few = np.arange(40)  # a short fold: only the newest history windows that keep it so
    Xf, yf = s.training_set(few, valid_fraction=spec.training.valid_fraction)
    _, valid = TailSplit(spec.training.valid_fraction, spec.max_horizon).indices(len(yf))
    assert len(Xf) < len(h) + 40 and valid.min() >= len(Xf) - 40
    assert np.array_equal(yf[:len(Xf) - 40], h.y[len(h) - (len(Xf) - 40):])
    # the scaler is fitted on the fold including the history; a driver missing there is
    # held at the fold's mean (0 after scaling)
    scale = build_pipeline(spec, verbose=0).named_steps["scale"]
    scaled = scale.fit(X, y).transform(X)
    zs = s.feature_names.index("zs_chg_1")
    assert np.all(scaled.values[scaled.ends[:len(h)], zs] == 0)
    ret_1 = s.feature_names.index("ret_1")
    own = type(scale)().fit(s.X[rows])
    assert scale.mean_[ret_1] != own.mean_[ret_1]
    assert not np.isnan(scaled.gather()).any()


def test_no_history_is_the_plain_training_set(samples):
    _, s = samples
    X, y = s.training_set(np.arange(50), history=False)
    assert len(X) == 50 and np.array_equal(y, s.y[:50])


def test_history_names_the_target(tmp_path, specs_dir):
    path = tmp_path / "spec.yaml"
    path.write_text(f"extends: {specs_dir / 'zl_1m_quick_history.yaml'}\n"
                    "history:\n  source: {path: zl/x.csv, columns: {settle: zs}}\n")
    with pytest.raises(SpecError, match="history.source.columns must name one series, the target"):
        load_spec(path)
