"""The run's report.md and PNG plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cbi_toolkit.evaluation import format_table  # noqa: E402
from cbi_toolkit.metrics import FoldPrediction, interval  # noqa: E402
from cbi_toolkit.storage import atomic_write_text  # noqa: E402
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


def fan_history(history: pd.Series, forecasts: pd.DataFrame, years: float = 2) -> pd.Series:
    """The prices a fan chart shows: four times the furthest horizon's span back from the
    origin, at least six months and at most ``years`` (a 1w band is invisible beside two
    years of prices)."""
    origin = pd.Timestamp(forecasts["origin_date"].max())
    span = pd.to_datetime(forecasts["target_date"]).max() - origin
    back = min(max(4 * span, pd.Timedelta(days=183)), pd.Timedelta(days=round(365.25 * years)))
    return history[history.index > history.index[-1] - back]


def plot_fan(history: pd.Series, forecasts: pd.DataFrame, path: Path, years: float = 2) -> Path:
    """The newest forecast as a fan over the recent prices (`fan_history`): the predicted
    price at each horizon's target date (exchange calendar) with its 80% and 95% bands."""
    history = fan_history(history, forecasts, years)
    fc = forecasts.sort_values("target_date")
    origin = pd.Timestamp(fc["origin_date"].iloc[0])
    price = float(history.iloc[-1])
    x = [origin, *pd.to_datetime(fc["target_date"])]

    def path_of(col: str) -> list[float]:
        return [price, *fc[col].astype(float)]

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(history.index, history.to_numpy(), color="k", lw=1, label="price")
    ax.fill_between(x, path_of("lower_95"), path_of("upper_95"), color="C0", alpha=0.18,
                    label="95% interval")
    ax.fill_between(x, path_of("lower_80"), path_of("upper_80"), color="C0", alpha=0.35,
                    label="80% interval")
    ax.plot(x, path_of("predicted_price"), color="C0", lw=1.5, marker="o", ms=4,
            label="forecast")
    for date, horizon in zip(x[1:], fc["horizon"], strict=True):  # along the bottom edge
        ax.text(date, 0.03, f"{horizon} {date:%Y-%m-%d}", transform=ax.get_xaxis_transform(),
                ha="center", va="bottom", rotation=90, fontsize=7)
    ax.axvline(origin, color="grey", ls=":", lw=0.8)
    series = f"{fc['series'].iloc[0]}: " if "series" in fc else ""
    ax.set_title(f"{series}newest forecast from {origin:%Y-%m-%d}; target dates on the CBOT calendar")
    ax.set_ylabel("price")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def skill_per_fold(folds: pd.DataFrame, reference: str = "random_walk") -> pd.DataFrame:
    """Per model, horizon and fold: MASE and CRPS divided by the ``reference``'s CRPS on
    the same fold (below 1: better than the random walk)."""
    ref = folds[folds["model"] == reference].set_index(["fold", "horizon"])["crps"]
    out = folds[folds["model"] != reference][["model", "fold", "horizon", "mase", "crps"]].copy()
    out["crps_skill"] = out["crps"].to_numpy() / ref.reindex(
        pd.MultiIndex.from_frame(out[["fold", "horizon"]])).to_numpy()
    return out


def plot_skill(folds: pd.DataFrame, path: Path) -> Path:
    """MASE and CRPS relative to the random walk per horizon: the mean over folds with a
    bar of ±1 standard deviation across folds, and each fold as a dot."""
    skill = skill_per_fold(folds)
    horizons = sorted(skill["horizon"].unique(), key=HORIZONS.__getitem__)
    models = [m for m in ("model", "drift", "ridge") if m in set(skill["model"])]
    models += sorted(set(skill["model"]) - set(models))
    x = np.arange(len(horizons))
    width = 0.8 / max(len(models), 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, col, label in ((axes[0], "mase", "MASE (MAE / random walk's MAE)"),
                           (axes[1], "crps_skill", "CRPS / random walk's CRPS")):
        for i, model in enumerate(models):
            mine = skill[skill["model"] == model]
            stats = mine.groupby("horizon")[col].agg(["mean", "std"]).reindex(horizons)
            pos = x + (i - (len(models) - 1) / 2) * width
            ax.errorbar(pos, stats["mean"], yerr=stats["std"].fillna(0), fmt="s", ms=6,
                        capsize=3, color=f"C{i}", label=model)
            for j, horizon in enumerate(horizons):
                values = mine.loc[mine["horizon"] == horizon, col].to_numpy()
                ax.plot(np.full(len(values), pos[j]), values, ".", color=f"C{i}", alpha=0.45)
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        # scaled to the model's spread; a weaker baseline off the scale is marked at the top
        own = skill.loc[skill["model"] == models[0], col]
        top = max(1.2, float(own.max()) + 0.1)
        ax.set_ylim(min(0.8, float(own.min()) - 0.1), top)
        means = skill.groupby(["model", "horizon"])[col].mean()
        for i, model in enumerate(models):
            for j, horizon in enumerate(horizons):
                value = means.get((model, horizon), np.nan)
                if value > top:
                    pos = x[j] + (i - (len(models) - 1) / 2) * width
                    ax.annotate(f"{model}\n{value:.2f}", (pos, top), xytext=(0, -8),
                                textcoords="offset points", ha="center", va="top", fontsize=7,
                                color=f"C{i}", bbox={"fc": "white", "ec": "none", "alpha": 0.8})
        ax.set_xticks(x, horizons)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("horizon")
    axes[0].set_ylabel("relative to the random walk (below 1: better)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"skill per horizon: mean over {folds['fold'].nunique()} walk-forward folds, "
                 "bars ±1 std across folds, dots single folds; off-scale means printed at the top",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(path: Path, *, spec_name: str, run_id: str, model_version: str,
                 summary: pd.DataFrame, forecasts: pd.DataFrame, gate_failures: list[str],
                 data_summary: str, intervals: str, plots: list[Path],
                 notes: dict[str, str] | None = None) -> Path:
    """``notes``: a line per horizon under its table (how the shipped model is combined)."""
    horizons = sorted(summary["horizon"].unique(), key=HORIZONS.__getitem__)
    lines = [
        f"# Run {run_id}", "",
        f"spec `{spec_name}`, model version `{model_version}`, intervals: {intervals}", "",
        "## Data", "", "```", data_summary, "```", "",
        "## Walk-forward metrics",
        "",
        "Pooled over the reported span (the test folds from `validation.test_start`). MASE = MAE /"
        " the random walk's MAE on the same origins; DM p = Diebold-Mariano p against the random "
        "walk (absolute errors, HLN); dir beside the up-move base rate with a binomial p; conf80/"
        "conf95 = conformal coverage; CRPS of the calibrated band and its ratio to the random walk "
        "with a trailing-volatility band (docs/skill.md). `model` is what the run ships, `net` the "
        "network alone.",
        "",
    ]
    for horizon in horizons:
        lines += ["```", format_table(summary, horizon), "```", ""]
        if notes and horizon in notes:
            lines += [notes[horizon], ""]
    verdict = "passed" if not gate_failures else "FAILED: " + "; ".join(gate_failures)
    lines += ["## Deploy gate", "", verdict, "", "## Forecast", "",
              forecasts.drop(columns=["run_id", "model_version"]).to_markdown(index=False), ""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    atomic_write_text(path, "\n".join(lines))
    return path
