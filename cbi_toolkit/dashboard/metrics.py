"""The dashboard's numbers, from the warehouse's scorecard view (pure pandas, no UI)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cbi_toolkit.targets import HORIZONS

KIND_LABEL = {"forecast": "live", "backtest": "backtest (walk-forward, out of sample)"}


def _rate(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.astype(float).mean()) if len(values) else float("nan")


def scorecard_summary(scorecard: pd.DataFrame) -> pd.DataFrame:
    """One row per kind (live, backtest): realised MAE/MAPE beside the random walk's on
    the same origins, interval hit rates beside their nominal levels, direction hit rate
    beside the base rate (always calling the more common direction on those origins)."""
    rows = []
    for kind in ("forecast", "backtest"):
        part = scorecard[scorecard["kind"] == kind]
        if part.empty:
            continue
        moved = part[part["direction_hit"].notna()]
        up = _rate(moved["actual_up"])
        mae, rw_mae = part["error"].abs().mean(), part["rw_error"].abs().mean()
        rows.append({
            "predictions": KIND_LABEL[kind], "n": len(part),
            "MAE": mae, "random walk MAE": rw_mae,
            "MAE / random walk MAE": mae / rw_mae if rw_mae > 0 else np.nan,
            "MAPE %": part["abs_pct_error"].mean(),
            "random walk MAPE %": part["rw_abs_pct_error"].mean(),
            "80% band hit (nominal 0.80)": _rate(part["in_80"]),
            "95% band hit (nominal 0.95)": _rate(part["in_95"]),
            "direction hit": _rate(moved["direction_hit"]),
            "direction base rate": max(up, 1 - up) if np.isfinite(up) else np.nan,
        })
    return pd.DataFrame(rows)


ROLLING = {"MAE": ("error", "rw_error"), "MAPE %": ("abs_pct_error", "rw_abs_pct_error")}


def rolling_errors(scorecard: pd.DataFrame, window: int = 63,
                   metric: str = "MAE") -> pd.DataFrame:
    """Long frame (target_date, line, value): the rolling ``metric`` (MAE or MAPE %) of the
    model's predictions and of the random walk on the same origins, by target date, per
    kind (live and backtest apart)."""
    frames = []
    for kind, part in scorecard.groupby("kind"):
        part = part.sort_values("target_date")
        w = max(1, min(window, len(part)))
        for name, col in zip(("model", "random walk"), ROLLING[metric], strict=True):
            frames.append(pd.DataFrame({
                "target_date": part["target_date"].to_numpy(),
                "line": f"{name}, {KIND_LABEL[kind]}",
                "value": part[col].abs().rolling(w, min_periods=w).mean().to_numpy()}))
    if not frames:
        return pd.DataFrame(columns=["target_date", "line", "value"])
    return pd.concat(frames, ignore_index=True).dropna()


def fan(latest: pd.DataFrame, actuals: pd.DataFrame, series: str,
        years: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, fan) for the newest forecast of ``series``: the actual closes of the last
    ``years`` years up to its origin, and the forecast from the origin's close (zero-width
    band) to each horizon's target date."""
    mine = latest[latest["series"] == series].sort_values("target_date")
    closes = actuals[actuals["series"] == series].sort_values("date")
    if mine.empty:
        return closes.tail(0), mine
    origin = mine["origin_date"].max()
    mine = mine[mine["origin_date"] == origin]
    history = closes[(closes["date"] > origin - pd.DateOffset(years=years))
                     & (closes["date"] <= origin)]
    start = history[history["date"] == origin]
    cols = ["predicted_price", "lower_80", "upper_80", "lower_95", "upper_95"]
    if len(start):
        anchor = pd.DataFrame({"target_date": [origin], "horizon": ["origin"],
                               **{c: [float(start["close"].iloc[0])] for c in cols}})
        mine = pd.concat([anchor, mine[["target_date", "horizon", *cols]]], ignore_index=True)
    return history, mine[["target_date", "horizon", *cols]]


def runs_table(runs: pd.DataFrame, series: str) -> pd.DataFrame:
    """The runs of ``series``, newest first, with walk-forward skill per horizon."""
    if runs.empty:
        return runs
    mine = runs[runs["series"] == series]
    mine = mine.assign(_h=mine["horizon"].map(lambda h: HORIZONS.get(h, 10**6))) \
        .sort_values(["created_at", "_h"], ascending=[False, True])
    return pd.DataFrame({
        "created (UTC)": pd.to_datetime(mine["created_at"]).dt.strftime("%Y-%m-%d %H:%M"),
        "spec": mine["spec_name"], "model version": mine["model_version"],
        "horizon": mine["horizon"], "folds": mine["n_folds"],
        "MAE": mine["mae"], "random walk MAE": mine["rw_mae"], "MASE": mine["mase"],
        "direction": mine["direction"],
        "80% cov": mine["coverage_80"], "95% cov": mine["coverage_95"],
        "intervals": mine["intervals"],
        "gate": np.where(mine["gate_passed"], "passed", "FAILED: " + mine["gate_failures"]),
        "run": mine["run_id"]})
