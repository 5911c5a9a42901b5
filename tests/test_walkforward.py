"""Walk-forward folds: gaps of the longest horizon, the selection/test split at
``validation.test_start``, strides, and the sklearn splitter's parts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.errors import SpecError
from cbi_toolkit.spec import load_spec
from cbi_toolkit.walkforward import SELECTION, TEST, walk_forward

# origin dates: the trading days of the real ZL series (the folds only need their order)
N = 3700


@pytest.fixture(scope="module")
def dates(data_dir) -> pd.DatetimeIndex:
    zl = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"])
    return pd.DatetimeIndex(zl["date"]).sort_values()[-N:]


@pytest.mark.parametrize("name", ["zl_1w", "zl_1m", "zl_12m", "zl_all", "zl_1m_quick"])
def test_folds_keep_a_gap_and_split_at_test_start(specs_dir, name, dates):
    spec = load_spec(specs_dir / f"{name}.yaml")
    folds = walk_forward(spec, N, dates).folds(N)
    first_test = int(np.searchsorted(dates, pd.Timestamp(spec.validation.test_start)))
    selection = [f for f in folds if f.role == SELECTION]
    tests = [f for f in folds if f.role == TEST]
    assert len(selection) == spec.validation.n_splits
    previous = 0
    for f in folds:
        assert f.test[0] - f.train[-1] - 1 >= spec.max_horizon  # no training target reaches the test block
        assert f.train[0] == 0 and len(f.train) > previous  # expanding window
        previous = len(f.train)
    # every selection origin's target is realised before the first test origin
    assert max(f.test[-1] for f in selection) + spec.max_horizon < first_test
    # the test folds tile the span from test_start to the end, a refit every test_size origins
    stride, size = spec.validation.stride, spec.validation.test_size
    assert tests[0].test[0] == first_test
    assert all(b.test[0] - a.test[0] == size for a, b in zip(tests, tests[1:], strict=False))
    assert tests[-1].test[-1] >= N - stride
    assert all(np.all(np.diff(f.test) == stride) for f in folds if len(f.test) > 1)


def test_splitter_parts_for_grid_search(specs_dir, dates):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml")
    X = np.zeros(N)
    sel = list(walk_forward(spec, N, dates, part="selection").split(X))
    test = list(walk_forward(spec, N, dates, part="test").split(X))
    assert len(sel) == spec.validation.n_splits
    first_test = int(np.searchsorted(dates, pd.Timestamp(spec.validation.test_start)))
    assert all(t[-1] < first_test and tr[-1] < first_test for tr, t in sel)
    assert all(t[0] >= first_test for _, t in test)
    assert walk_forward(spec, N, dates, part="selection").get_n_splits(X) == len(sel)


def test_without_test_start_folds_are_sklearns(specs_dir):
    from sklearn.model_selection import TimeSeriesSplit

    spec = load_spec(specs_dir / "zl_1m.yaml", overrides={"validation.test_start": None,
                                                           "validation.stride": 1,
                                                           "validation.test_size": None})
    ours = list(walk_forward(spec, N).split(np.zeros(N)))
    size = (N - spec.gap) // (spec.validation.n_splits + 1)
    theirs = list(TimeSeriesSplit(spec.validation.n_splits, gap=spec.gap,
                                  test_size=size).split(np.zeros(N)))
    assert len(ours) == len(theirs)
    for (a, b), (c, d) in zip(ours, theirs, strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)


def test_test_start_outside_the_data_is_a_spec_error(specs_dir, dates):
    late = load_spec(specs_dir / "zl_1m.yaml", overrides={"validation.test_start": "2030-01-02"})
    with pytest.raises(SpecError, match="after the last labelled origin"):
        walk_forward(late, N, dates).folds(N)
    early = load_spec(specs_dir / "zl_1m.yaml", overrides={"validation.test_start": "2009-03-02"})
    with pytest.raises(SpecError, match="selection folds"):
        walk_forward(early, N, dates).folds(N)
