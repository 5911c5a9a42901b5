"""Does the net forecast better when it learns volatility-scaled targets? (issue 11's lever)

    python bench/vol_scaled_targets.py SPEC [--set KEY=VALUE ...] [--data-dir DIR] [--json PATH]

The plain net learns forward log returns y, whose size swings with the market's volatility
(2008, 2020-22), so a few volatile years dominate its loss. The variant
(``model.target_scale: volatility``) learns z = y / (vol_63(t) * sqrt(h)) instead -- the
return in units of the trailing 63-session volatility at the origin, the `vol_random_walk`
baseline's sigma -- and maps its mean and sigma back by the same factor. Both nets (same
spec, same seed) and the spec's baselines are fitted on the same walk-forward folds in one
backtest; each net then goes through the toolkit's own scoring
(`cbi_toolkit.skill.score_predictions`: combination with the random walk chosen on the
selection folds, online calibration), and the table shows, per horizon, on the selection
folds and on the test span: the net's own MASE against the random walk with its
Diebold-Mariano p, its calibrated CRPS against the volatility band, and the shipped model's
MASE and weight; then the Diebold-Mariano test of the vol-scaled net against the plain one
on each span (``dm_stat_abs < 0``: the vol-scaled net's absolute price errors are smaller).

A research script for docs/skill.md, never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cbi_toolkit.backtest import backtest, labelled_samples  # noqa: E402
from cbi_toolkit.calibration import MODEL, NET  # noqa: E402
from cbi_toolkit.cli import parse_overrides  # noqa: E402
from cbi_toolkit.evaluation import dm_table  # noqa: E402
from cbi_toolkit.metrics import FoldPrediction  # noqa: E402
from cbi_toolkit.pipeline import build_pipeline  # noqa: E402
from cbi_toolkit.run.prepare import prepare  # noqa: E402
from cbi_toolkit.skill import baselines_for, score_predictions  # noqa: E402
from cbi_toolkit.spec import load_spec  # noqa: E402

SCALED = "net_vol_scaled"


def scaled_pipeline(spec) -> Pipeline:
    """The spec's pipeline with ``model.target_scale: volatility``."""
    return build_pipeline(spec.model_copy(update={"model": spec.model.model_copy(
        update={"target_scale": "volatility"})}))


def rows(assessment, label: str) -> list[dict]:
    out = []
    for span, table in (("selection", assessment.selection), ("test", assessment.summary)):
        if table is None:
            continue
        for _, r in table.iterrows():
            if r["model"] not in (NET, MODEL):
                continue
            out.append({"net": label, "span": span, "horizon": r["horizon"], "model": r["model"],
                        "n": int(r["n"]), "mase": float(r["mase"]),
                        "dm_p_abs": float(r["dm_p_abs"]),
                        "crps_rel_vol": float(r.get("crps_rel_vol", np.nan)),
                        "conf80": float(r["conformal_coverage_80"]),
                        "conf95": float(r["conformal_coverage_95"])})
    weights = assessment.weights()
    for r in out:
        if r["model"] == MODEL and r["span"] == "test":
            r["mean_weight"] = float(np.mean([c["weight"] for c in weights[r["horizon"]]]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    spec = load_spec(args.spec, overrides=parse_overrides(args.set))
    _, samples = prepare(spec, args.data_dir)
    labelled = labelled_samples(samples)
    models = {NET: build_pipeline(spec), SCALED: scaled_pipeline(spec), **baselines_for(spec)}
    preds, seconds, _ = backtest(spec, labelled, models)
    found = []
    for label, name in (("plain", NET), ("vol-scaled", SCALED)):
        other = SCALED if name == NET else NET
        mine = [FoldPrediction(NET, p.fold, p.horizon, p.y, p.mu, p.sigma, p.price, p.dates, p.role)
                if p.model == name else p for p in preds if p.model != other]
        secs = {m: s for m, s in seconds.items() if m != other} | {NET: seconds[name]}
        found += rows(score_predictions(spec, mine, secs, labelled.dates), label)
    table = pd.DataFrame(found)
    pd.set_option("display.width", 200)
    print(f"{spec.name}: fit seconds per fold, plain {np.mean(seconds[NET]):.0f}, "
          f"vol-scaled {np.mean(seconds[SCALED]):.0f}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    stride = spec.validation.stride
    versus = pd.concat([dm_table(preds, SCALED, role, stride).assign(span=role)
                        for role in ("selection", "test")])
    versus = versus[versus["versus"] == NET]
    print("vol-scaled net against the plain net:")
    print(versus[["span", "horizon", "n", "dm_stat_abs", "dm_p_abs", "dm_p_sq"]].to_string(
        index=False, float_format=lambda v: f"{v:.3f}"))
    if args.json:
        args.json.write_text(json.dumps({"rows": found, "versus": versus.to_dict("records")},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
