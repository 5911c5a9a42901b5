"""Re-score a finished run's fold predictions under each calibration mode, side by side.

The folds' predictions are read from the run's ``oos_predictions.csv`` (nothing is refitted), so
fixed and online calibration are compared on exactly the same forecasts. Run from the repo
root: ``python bench/rescore_calibration.py RUN_DIR [RUN_DIR ...] [--data-dir DIR]``;
prints per horizon and model the conformal coverage, CRPS against the volatility band,
MASE and the DM p against the random walk, under fixed and under online calibration refitted
once a fold (``online``, half-life chosen on the selection folds), and the selection folds' coverage error of
every half-life tried. ``--variant every=5,halflife=auto`` (repeatable) adds an online
calibration with those `forecast.calibration` keys. ``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cbi_toolkit.backtest import labelled_samples  # noqa: E402
from cbi_toolkit.calibration import (  # noqa: E402
    MODEL,
    block_coverage,
    coverage_error,
    fold_starts,
    residuals,
)
from cbi_toolkit.metrics import FoldPrediction  # noqa: E402
from cbi_toolkit.run.prepare import prepare  # noqa: E402
from cbi_toolkit.skill import score_predictions  # noqa: E402
from cbi_toolkit.spec import load_spec  # noqa: E402
from cbi_toolkit.walkforward import DEFAULT_TEST_SIZE, SELECTION  # noqa: E402

COLUMNS = ["conformal_coverage_80", "conformal_coverage_95", "crps_rel_vol", "crps_cal", "mase",
           "dm_p_abs"]


def rescore(run_dir: Path, data_dir: str | None, variants: tuple[str, ...] = ()
            ) -> tuple[pd.DataFrame, dict]:
    spec = load_spec(run_dir / "spec.yaml")
    oos = pd.read_csv(run_dir / "oos_predictions.csv", parse_dates=["origin_date"],
                      dtype={"horizon": str})
    oos = oos[oos["model"] != MODEL]  # the shipped model is rebuilt from the net's rows
    preds = [FoldPrediction(m, int(f), h, g["y"].to_numpy(), g["mu"].to_numpy(),
                            g["sigma"].to_numpy(), g["price"].to_numpy(),
                            pd.DatetimeIndex(g["origin_date"]), r)
             for (m, f, h, r), g in oos.groupby(["model", "fold", "horizon", "role"], sort=False)]
    seconds = {m: [0.0] for m in oos["model"].unique()}
    k = int(oos["fold"].nunique())
    _, samples = prepare(spec, data_dir)
    origins = labelled_samples(samples).dates
    tables, chosen = [], {}
    base = {"every": None}
    modes = [("fixed", {"mode": "fixed"} | base), ("online", {"mode": "online"} | base),
             *((v, {"mode": "online"} | base | parse_variant(v)) for v in variants)]
    for name, keys in modes:
        cfg = spec.forecast.calibration.model_validate(
            spec.forecast.calibration.model_dump() | keys)
        variant = spec.model_copy(update={"forecast": spec.forecast.model_copy(update={
            "calibration": cfg})})
        result = score_predictions(variant, preds, seconds, origins)
        t = result.summary[["horizon", "model", "n", *COLUMNS]].copy()
        t.insert(0, "mode", name)
        tables.append(t)
        if name in variants:
            chosen[name] = {"halflife": result.policy.halflife, "errors": result.halflife_errors}
        if name == "online":
            chosen |= {"halflife": result.policy.halflife, "errors": result.halflife_errors,
                      "last_selection_fold": last_fold_evidence(result),
                      "selection": result.selection[["horizon", "model", *COLUMNS[:3]]]
                      .to_dict(orient="records") if result.selection is not None else None}
    return pd.concat(tables), {"spec": spec.name, "folds": k, **chosen}


def parse_variant(text: str) -> dict:
    """``every=5,halflife=auto`` -> {"every": 5, "halflife": "auto"} (numbers as numbers)."""
    out = {}
    for item in text.split(","):
        key, value = item.split("=")
        out[key] = value if not value.replace(".", "", 1).isdigit() else (
            float(value) if "." in value else int(value))
    return out


def last_fold_evidence(result) -> dict[str, dict]:
    """Fixed against online on the selection folds' evidence alone: the shipped model's
    coverage on the last selection fold's blocks, calibrated once at its start (fixed) or
    at every block (online, the chosen half-life)."""
    spec, preds, origins = result.spec, result.predictions, result.origins
    starts = fold_starts(preds, origins)
    last = starts[max(p.fold for p in preds if p.role == SELECTION)]
    block = spec.validation.test_size or DEFAULT_TEST_SIZE
    out = {}
    for h in spec.horizons:
        res = residuals(preds, MODEL, h, origins)
        runs = {"fixed": block_coverage(res, block, None, first=last, frozen=True),
                "online": block_coverage(res, block, result.policy.halflife[h], first=last)}
        out[h] = {k: {"error": round(coverage_error(v), 4),
                      **{str(lv): round(float(np.mean(x)), 3) for lv, x in v.items()}}
                  for k, v in runs.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data-dir")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--variant", action="append", default=[],
                        help="also online with these calibration keys, e.g. every=5")
    args = parser.parse_args()
    out = []
    for run in args.runs:
        table, info = rescore(run, args.data_dir, tuple(args.variant))
        wide = table.pivot_table(index=["horizon", "model"], columns="mode",
                                 values=COLUMNS[:3], sort=False)
        print(f"\n{info['spec']} ({run}, {info['folds']} folds), online half-life per horizon "
              f"(chosen on the selection folds): {info['halflife']}")
        print("selection-fold coverage error per half-life:", json.dumps(info["errors"]))
        print("last selection fold, fixed vs online:", json.dumps(info["last_selection_fold"]))
        for v in args.variant:
            print(f"{v}: half-life {info[v]['halflife']}, selection-fold coverage error per "
                  f"half-life {json.dumps(info[v]['errors'])}")
        print(wide.round(3).to_string())
        out.append({"run": str(run), **info, "rows": table.to_dict(orient="records")})
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
