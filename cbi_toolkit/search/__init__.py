"""Grid and random search over spec variants, on one machine or a Dask cluster.

A grid (a separate YAML file naming a ``base:`` spec, or a ``search:`` section
inside a spec) lists values for any dotted spec key path. Each combination is a
*variant*: the base spec with those overrides, validated like any spec.

The spec grid is translated to scikit-learn searches, not run by a second
implementation:

* variants are grouped by the part of the spec that shapes the samples and the
  folds (data, features, horizons, window, validation, ...); each group's
  samples are prepared once, and every group is cut to the origin dates that
  all groups share, so every variant is scored on the same walk-forward folds;
* inside a group, variants differ only in pipeline parameters: the difference
  between ``build_pipeline(variant)`` and ``build_pipeline(first variant)`` is
  a nested parameter dict (``net__module__hidden_dim``, ``net__lr``, ...), and
  the group runs as ``GridSearchCV(build_pipeline(spec), param_grid,
  cv=walk_forward(spec, n, dates, part="selection"), scoring=ForecastScorer(...))``;
* `ForecastScorer` computes every metric of `evaluation.score` (MASE against
  the random walk included) on the test fold; it finds each test origin's
  price from the window's origin row (``X.ends``), so no custom splitter is
  needed.

Execution goes through joblib: ``n_jobs`` locally (loky, one torch/BLAS thread
per worker) or dask.distributed's joblib backend on a cluster (a worker plugin
sets one torch thread). Finished variants are appended to ``results.jsonl`` in
the search folder as they complete, keyed by the variant's hash and the
fingerprint of the evaluation origins, and skipped on re-run.
"""

from cbi_toolkit.search.cli import main
from cbi_toolkit.search.grid import Grid, SearchConfig, Variant, load_grid, variant_hash
from cbi_toolkit.search.runner import (
    SearchResult,
    format_leaderboard,
    leaderboard,
    make_search,
    run_search,
)
from cbi_toolkit.search.scoring import METRICS, ForecastScorer, param_grid_for
from cbi_toolkit.search.store import RESULTS_FILE, append_row, load_store

__all__ = [
    "METRICS", "RESULTS_FILE", "ForecastScorer", "Grid", "SearchConfig", "SearchResult", "Variant",
    "append_row", "format_leaderboard", "leaderboard", "load_grid", "load_store", "main",
    "make_search", "param_grid_for", "run_search", "variant_hash",
]
