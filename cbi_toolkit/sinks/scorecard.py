"""The ``scorecard`` view: every prediction whose target date has an actual close.

One SELECT that DuckDB and BigQuery both run (names are passed in quoted for the
dialect). Per prediction: the actual close, the error and absolute percentage error
(in percent, like ``evaluation.mape``), whether the 80%/95% bands held the actual
(NULL where a backtest row has no calibrated band), the direction hit (NULL where the
forecast or the market did not move, as in ``evaluation.direction_accuracy``), and the
same errors for the random walk from the same origin: the origin's close.
"""

from __future__ import annotations

COLUMNS = ("series", "kind", "model_version", "run_id", "origin_date", "horizon",
           "target_date", "predicted_price", "lower_80", "upper_80", "lower_95", "upper_95",
           "origin_close", "actual", "error", "abs_pct_error", "rw_error", "rw_abs_pct_error",
           "in_80", "in_95", "direction_hit", "actual_up")


def scorecard_select(predictions: str, actuals: str) -> str:
    """The view's SELECT over the (already quoted) ``predictions`` and ``actuals`` tables."""
    return f"""SELECT p.series, p.kind, p.model_version, p.run_id, p.origin_date, p.horizon,
  p.target_date, p.predicted_price, p.lower_80, p.upper_80, p.lower_95, p.upper_95,
  o.close AS origin_close, a.close AS actual,
  p.predicted_price - a.close AS error,
  100 * ABS(p.predicted_price - a.close) / a.close AS abs_pct_error,
  o.close - a.close AS rw_error,
  100 * ABS(o.close - a.close) / a.close AS rw_abs_pct_error,
  a.close BETWEEN p.lower_80 AND p.upper_80 AS in_80,
  a.close BETWEEN p.lower_95 AND p.upper_95 AS in_95,
  CASE WHEN a.close = o.close OR p.predicted_price = o.close THEN NULL
       ELSE SIGN(p.predicted_price - o.close) = SIGN(a.close - o.close) END AS direction_hit,
  CASE WHEN a.close = o.close THEN NULL ELSE a.close > o.close END AS actual_up
FROM {predictions} AS p
JOIN {actuals} AS a ON a.series = p.series AND a.date = p.target_date
JOIN {actuals} AS o ON o.series = p.series AND o.date = p.origin_date"""


def latest_select(predictions: str, columns) -> str:
    """The ``latest_predictions`` view: the newest live forecast per series and horizon."""
    return (f"SELECT {', '.join(columns)} FROM {predictions} WHERE kind = 'forecast'\n"
            "QUALIFY ROW_NUMBER() OVER (\n"
            "  PARTITION BY series, horizon ORDER BY origin_date DESC, created_at DESC) = 1")
