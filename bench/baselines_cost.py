"""Cost and out-of-sample quality of every baseline on the real snapshot (one long fold).

Fits each baseline on the labelled origins before the last ~1,000 (minus a gap of the longest
horizon) and predicts the last 1,000 origins at every horizon of zl_all_quick; prints seconds
and the Gaussian CRPS / 80% coverage of mu ± z·sigma on log returns. Run from the repo root:
``OMP_NUM_THREADS=1 python bench/baselines_cost.py``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cbi_toolkit.dataset import load_samples  # noqa: E402
from cbi_toolkit.metrics import coverage, crps_gaussian, interval  # noqa: E402
from cbi_toolkit.pipeline import build_baselines, predict_dist  # noqa: E402
from cbi_toolkit.sources.base import SourceContext  # noqa: E402
from cbi_toolkit.spec import BASELINE_NAMES, load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    spec = load_spec(ROOT / "specs" / "zl_all_quick.yaml",
                     overrides={"baselines": list(BASELINE_NAMES)})
    _, samples = load_samples(spec, SourceContext(data_dir=ROOT.parent / "shared" / "data"))
    lab = samples.subset(np.flatnonzero(samples.labelled))
    n, test_n = len(lab), 1000
    train = lab.subset(np.arange(n - test_n - spec.max_horizon))
    test = lab.subset(np.arange(n - test_n, n))
    out = {"spec": spec.name, "train": len(train), "test": len(test),
           "test_span": [str(test.dates[0].date()), str(test.dates[-1].date())], "baselines": {}}
    for name, pipe in build_baselines(spec).items():
        t0 = time.perf_counter()
        pipe.fit(train.X, train.y)
        t1 = time.perf_counter()
        mu, sigma = predict_dist(pipe, test.X)
        t2 = time.perf_counter()
        row = {"fit_s": round(t1 - t0, 3), "predict_s": round(t2 - t1, 3)}
        for j, h in enumerate(spec.horizons):
            lo, hi = interval(mu[:, j], sigma[:, j], 0.8)
            row[h] = {"crps": round(crps_gaussian(test.y[:, j], mu[:, j], sigma[:, j]), 5),
                      "coverage_80": round(coverage(test.y[:, j], lo, hi), 3),
                      "mae": round(float(np.mean(np.abs(test.y[:, j] - mu[:, j]))), 5)}
        out["baselines"][name] = row
        print(name, json.dumps(row), flush=True)
    (ROOT / "bench" / "baselines_cost.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
