"""The spec compiles to a plain sklearn Pipeline that GridSearchCV can search
with the toolkit's walk-forward splitter."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from cbi_toolkit.backtest import labelled_samples
from cbi_toolkit.pipeline import build_pipeline
from cbi_toolkit.run.prepare import prepare
from cbi_toolkit.spec import load_spec
from cbi_toolkit.walkforward import walk_forward


@pytest.fixture(scope="module")
def tiny(specs_dir, data_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={
        "window": 20, "model.hidden_dim": 8, "model.num_heads": 2, "model.num_layers": 1,
        "training.max_epochs": 1, "training.batch_size": 128, "validation.n_splits": 2,
        "validation.test_start": None})
    _, samples = prepare(spec, str(data_dir))
    return spec, labelled_samples(samples)


def test_spec_values_are_nested_pipeline_params(tiny):
    spec, _ = tiny
    pipe = build_pipeline(spec)
    assert isinstance(pipe, Pipeline)
    params = pipe.get_params()
    assert params["net__module__hidden_dim"] == 8
    assert params["net__lr"] == spec.training.lr
    assert params["net__valid_gap"] == spec.max_horizon
    pipe.set_params(net__module__hidden_dim=16)
    twin = clone(pipe)
    assert twin.get_params()["net__module__hidden_dim"] == 16
    assert twin is not pipe and twin.named_steps["net"] is not pipe.named_steps["net"]


def test_grid_search_with_walk_forward(tiny):
    spec, samples = tiny
    n = 900  # the newest origins are enough to exercise the search
    sub = samples.subset(np.arange(len(samples) - n, len(samples)))
    search = GridSearchCV(build_pipeline(spec, verbose=0),
                          {"net__module__hidden_dim": [4, 8]},
                          cv=walk_forward(spec, n), scoring="neg_mean_absolute_error")
    search.fit(sub.X, sub.y)
    assert search.best_params_["net__module__hidden_dim"] in (4, 8)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    pred = search.predict(sub.X[np.arange(5)])
    assert pred.shape == (5, 1) and np.isfinite(pred).all()
