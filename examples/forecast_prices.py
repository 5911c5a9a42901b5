"""Forecast ZL soybean oil at 1w..12m from Python, in prices, and draw the fan chart.

    python examples/forecast_prices.py [OUT_DIR]

Small settings (2 epochs, a yearly refit over the 2019- test span, a small network): a few
minutes on a laptop CPU.
For real use drop the overrides, or use specs/zl_all.yaml (hours on a CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import cbi_toolkit as cbi
from cbi_toolkit.report import plot_fan, plot_skill

SMALL = {"training.max_epochs": 2, "validation.test_size": 252, "window": 21,
         "model.hidden_dim": 16, "model.num_heads": 2, "model.num_layers": 1}


def main(out_dir: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    spec = cbi.load_spec(root / "specs" / "zl_all_quick.yaml", SMALL)
    data = cbi.load_data(spec)
    print(f"{len(data)} origins {data.dates[0]:%Y-%m-%d} .. {data.dates[-1]:%Y-%m-%d}")

    result = cbi.evaluate(spec, data)
    table = result.summary.pivot(index="horizon", columns="model", values="mase")
    print("MASE (random walk = 1):")
    print(table.reindex(spec.horizons).round(3).to_string())

    model = cbi.fit(spec, data)
    forecast = cbi.forecast(model, data, result)
    print(forecast[["horizon", "origin_date", "target_date", "predicted_price", "lower_80",
                    "upper_80", "lower_95", "upper_95"]].round(2).to_string(index=False))

    out_dir.mkdir(parents=True, exist_ok=True)
    fan = plot_fan(pd.Series(data.price, index=data.dates), forecast, out_dir / "fan_chart.png")
    folds = result.folds
    skill = plot_skill(folds[(folds["role"] == "test")
                             & folds["model"].isin(["model", "net", "vol_random_walk", "drift"])],
                       out_dir / "skill.png")
    print(f"plots: {fan}, {skill}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("example_output"))
