"""What a run adds to the warehouse beside its live forecasts, so the scorecard has a
track record from the first run and the dashboard can show the runs:

- the model's walk-forward out-of-sample predictions as ``kind='backtest'`` prediction
  rows (bands as the evaluation scores them: the calibrated sigma, Gaussian or conformal
  with the calibration of earlier folds only, so a fold with none has no conformal band);
- the target's closes (``actuals``);
- one ``runs`` row per horizon: walk-forward skill beside the random walk's, gate result.

The rows are saved in the run folder (``sink/*.parquet``) so ``--sink-only`` writes the
same rows later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cbi_toolkit.evaluation import calibrated
from cbi_toolkit.metrics import LEVELS, FoldPrediction, interval
from cbi_toolkit.storage import atomic_write_bytes
from cbi_toolkit.targets import HORIZONS

FOLDER = "sink"
TABLES = ("backtest", "actuals", "runs")


def build(spec, data_dir: str | None, preds: list[FoldPrediction], model: str,
          summary: pd.DataFrame, failures: list[str], model_version: str, run_id: str,
          created_at: pd.Timestamp, cals: dict) -> dict[str, pd.DataFrame]:
    """The run's rows for the sink beside its forecasts: backtest, actuals, runs; ``cals``:
    the evaluation's calibration per (model, horizon, fold), so the bands are the scored ones."""
    closes = target_closes(spec, data_dir)
    intervals, series = spec.forecast.intervals, spec.target
    return {
        "backtest": backtest_rows(preds, model, closes.index, intervals, series, model_version,
                                  run_id, created_at, cals),
        "actuals": actual_rows(closes, series),
        "runs": run_rows(summary, model, failures, series=series, spec_name=spec.name,
                         model_version=model_version, run_id=run_id, intervals=intervals,
                         created_at=created_at),
    }


def target_closes(spec, data_dir: str | None) -> pd.Series:
    """The target's closes on its trading days (the calendar the run's targets use)."""
    from cbi_toolkit.data import released, resolve_data_dir
    from cbi_toolkit.sources.base import SourceContext

    source = spec.source_for(spec.target)
    ctx = SourceContext(data_dir=resolve_data_dir(data_dir))
    return released(source.load(ctx), source)[spec.target].dropna()


def actual_rows(closes: pd.Series, series: str) -> pd.DataFrame:
    return pd.DataFrame({"series": series, "date": closes.index, "close": closes.to_numpy(float)})


def backtest_rows(preds: list[FoldPrediction], model: str, calendar: pd.DatetimeIndex,
                  intervals: str, series: str, model_version: str, run_id: str,
                  created_at: pd.Timestamp, cals: dict) -> pd.DataFrame:
    """One prediction row per out-of-sample origin and horizon of ``model``; ``cals``:
    the `Calibration` of each (model, horizon, fold), as the evaluation scored it."""
    frames = []
    mine = [p for p in preds if p.model == model]
    for p in mine:
        steps = HORIZONS[p.horizon]
        pos = calendar.get_indexer(p.dates)
        if (pos < 0).any() or (pos + steps >= len(calendar)).any():
            raise ValueError(f"backtest origins of {p.horizon} fold {p.fold} are not on the "
                             "target's calendar with a known target date")
        frame = pd.DataFrame({
            "series": series, "kind": "backtest", "origin_date": p.dates,
            "horizon": p.horizon, "target_date": calendar[pos + steps],
            "predicted_price": p.price * np.exp(p.mu)})
        bands = calibrated(p, cals.get((model, p.horizon, p.fold)))
        for level in LEVELS:
            pct = int(round(level * 100))
            if intervals == "conformal":
                lo, hi = bands[f"lo_{pct}"], bands[f"hi_{pct}"]
            else:
                lo, hi = interval(p.mu, bands["sigma_cal"], level)
            frame[f"lower_{pct}"] = p.price * np.exp(lo)
            frame[f"upper_{pct}"] = p.price * np.exp(hi)
        frames.append(frame.assign(sigma=bands["sigma_cal"], model_version=model_version,
                                   run_id=run_id, created_at=created_at))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def run_rows(summary: pd.DataFrame, model: str, failures: list[str], *, series: str,
             spec_name: str, model_version: str, run_id: str, intervals: str,
             created_at: pd.Timestamp) -> pd.DataFrame:
    """One row per horizon: the model's walk-forward skill beside the random walk's."""
    prefix = "conformal_coverage" if intervals == "conformal" else "coverage"
    rows = []
    for r in summary[summary["model"] == model].itertuples():
        rw = summary[(summary["model"] == "random_walk") & (summary["horizon"] == r.horizon)]
        rows.append({
            "run_id": run_id, "series": series, "horizon": r.horizon, "spec_name": spec_name,
            "model_version": model_version, "created_at": created_at, "intervals": intervals,
            "n_folds": int(r.folds), "mae": r.mae, "rw_mae": float(rw["mae"].iloc[0]),
            "mape": r.mape, "rw_mape": float(rw["mape"].iloc[0]), "mase": r.mase,
            "direction": r.direction, "coverage_80": getattr(r, f"{prefix}_80"),
            "coverage_95": getattr(r, f"{prefix}_95"), "gate_passed": not failures,
            "gate_failures": "; ".join(f for f in failures if f.startswith(f"{r.horizon}:"))})
    return pd.DataFrame(rows)


def save(run_dir: Path, tables: dict[str, pd.DataFrame]) -> None:
    folder = run_dir / FOLDER
    folder.mkdir(exist_ok=True)
    for name, frame in tables.items():
        atomic_write_bytes(folder / f"{name}.parquet", frame.to_parquet(index=False))


def load(run_dir: Path) -> dict[str, pd.DataFrame]:
    """The saved tables (none for a run folder from before the track record)."""
    folder = run_dir / FOLDER
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES
            if (folder / f"{name}.parquet").is_file()}


def write(sink, tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Upsert the saved tables into the sink; rows written per table."""
    written = {}
    if "backtest" in tables and len(tables["backtest"]):
        written["backtest"] = sink.write(tables["backtest"])
    if "actuals" in tables:
        written["actuals"] = sink.write_actuals(tables["actuals"])
    if "runs" in tables:
        written["runs"] = sink.write_runs(tables["runs"])
    return written
