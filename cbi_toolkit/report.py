"""The run's report.md and PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cbi_toolkit.evaluation import FoldPrediction, format_table, interval  # noqa: E402
from cbi_toolkit.targets import HORIZONS  # noqa: E402


def plot_forecasts(preds: list[FoldPrediction], path: Path, model: str = "model",
                   last_folds: int = 2) -> Path:
    """Predicted vs actual price at each origin's target, with the 95% Gaussian band,
    over the last test folds, one panel per horizon."""
    horizons = sorted({p.horizon for p in preds}, key=HORIZONS.__getitem__)
    fig, axes = plt.subplots(len(horizons), 1, figsize=(10, 3.2 * len(horizons)), squeeze=False)
    for ax, horizon in zip(axes[:, 0], horizons, strict=True):
        mine = sorted((p for p in preds if p.model == model and p.horizon == horizon),
                      key=lambda p: p.fold)[-last_folds:]
        for p in mine:
            actual = p.price * np.exp(p.y)
            lo, hi = interval(p.mu, p.sigma, 0.95)
            ax.fill_between(p.dates, p.price * np.exp(lo), p.price * np.exp(hi), color="C0",
                            alpha=0.2, label="95% interval" if p is mine[0] else None)
            ax.plot(p.dates, p.price * np.exp(p.mu), color="C0", lw=1,
                    label="forecast" if p is mine[0] else None)
            ax.plot(p.dates, actual, color="k", lw=1, label="actual" if p is mine[0] else None)
        ax.set_title(f"{horizon} ahead: price at origin + {HORIZONS[horizon]} trading days "
                     "(plotted at the origin date)")
        ax.set_ylabel("price")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_coverage(summary: pd.DataFrame, path: Path, model: str = "model") -> Path:
    """Empirical interval coverage per horizon, Gaussian and conformal, against nominal."""
    rows = summary[summary["model"] == model]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for i, (col, label) in enumerate([("coverage_80", "Gaussian 80%"),
                                      ("conformal_coverage_80", "conformal 80%"),
                                      ("coverage_95", "Gaussian 95%"),
                                      ("conformal_coverage_95", "conformal 95%")]):
        ax.bar(x + (i - 1.5) * 0.2, rows[col].to_numpy(), width=0.2, label=label)  # NaN: no bar
    for nominal in (0.8, 0.95):
        ax.axhline(nominal, color="k", ls="--", lw=0.8)
    ax.set_xticks(x, rows["horizon"])
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("share of actuals inside")
    ax.set_title("interval coverage per horizon (dashed: nominal)")
    ax.legend(fontsize=7, ncol=4, loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(path: Path, *, spec_name: str, run_id: str, model_version: str,
                 summary: pd.DataFrame, forecasts: pd.DataFrame, gate_failures: list[str],
                 data_summary: str, intervals: str, plots: list[Path]) -> Path:
    horizons = sorted(summary["horizon"].unique(), key=HORIZONS.__getitem__)
    lines = [
        f"# Run {run_id}", "",
        f"spec `{spec_name}`, model version `{model_version}`, intervals: {intervals}", "",
        "## Data", "", "```", data_summary, "```", "",
        "## Walk-forward metrics (mean over folds; MASE = MAE / random walk's MAE on the same folds)",
        "",
    ]
    for horizon in horizons:
        lines += ["```", format_table(summary, horizon), "```", ""]
    verdict = "passed" if not gate_failures else "FAILED: " + "; ".join(gate_failures)
    lines += ["## Deploy gate", "", verdict, "", "## Forecast", "",
              forecasts.drop(columns=["run_id", "model_version"]).to_markdown(index=False), ""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    path.write_text("\n".join(lines))
    return path
