"""Walk-forward skill of one pooled network for several commodities (a spec's ``targets``).

On every fold of the spec (the same folds for every commodity: they share the origin
dates) one `GlobalForecastNet` is fitted on the windows of all commodities, each scaled
by its own scaler fitted on the training fold; its output is split per commodity.
Beside it, per commodity and on the same folds: the spec's baselines and a
single-commodity net (the commodity's own spec, ``single_net``), each shipped through
the same combination with the random walk (``model`` for the pooled net,
``single_model`` for the single one), calibrated per commodity on earlier folds only.
`comparison` then says, per commodity and horizon, whether pooling helped.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cbi_toolkit.backtest import backtest
from cbi_toolkit.calibration import MODEL, NET, VOL
from cbi_toolkit.evaluation import FoldPrediction, dm_table
from cbi_toolkit.features.pooled import PooledWindowScaler
from cbi_toolkit.models.global_regressor import pooled_regressor_from_spec
from cbi_toolkit.pipeline import build_pipeline
from cbi_toolkit.pooled_dataset import PooledSamples
from cbi_toolkit.skill import Assessment, baselines_for, score_predictions, shipped_predictions
from cbi_toolkit.spec import Spec

log = logging.getLogger(__name__)

#: the single-commodity net on the same folds, and its shipped combination
SINGLE, SINGLE_MODEL = "single_net", "single_model"


def build_pooled_pipeline(spec: Spec, verbose: int = 1) -> Pipeline:
    """``Pipeline([("scale", PooledWindowScaler()), ("net", GlobalForecastRegressor)])``;
    parameters as `build_pipeline`'s (``net__module__hidden_dim``, ``net__lr``...)."""
    net = pooled_regressor_from_spec(spec.model, spec.training, n_horizons=len(spec.horizons),
                                     valid_gap=spec.max_horizon, verbose=verbose)
    return Pipeline([("scale", PooledWindowScaler()), ("net", net)])


def backtest_pooled(spec: Spec, pooled: PooledSamples, proto: Pipeline,
                    on_fold: Callable[[int, int], None] | None = None,
                    final: Pipeline | None = None,
                    ) -> tuple[dict[str, list[FoldPrediction]], list[float], Pipeline | None]:
    """The pooled net's out-of-sample predictions per commodity on every fold of the spec,
    its fit time per fold, and ``final`` fitted on all of ``pooled`` (None when not given).
    ``pooled`` must be labelled (`labelled_pooled`). The folds and the final fit are
    `backtest`'s: in ``training.n_jobs`` workers or on ``training.scheduler``."""
    preds, seconds, fitted = backtest(spec, pooled, {NET: proto}, on_fold, final=final)
    return ({c: [p for p in preds if p.series == c] for c in pooled.commodities},
            seconds[NET], fitted)


def _renamed(preds: list[FoldPrediction], old: str, new: str) -> list[FoldPrediction]:
    return [dataclasses.replace(p, model=new) for p in preds if p.model == old]


@dataclass
class PooledAssessment:
    """Per commodity, an `Assessment` whose ``net``/``model`` are the pooled network (raw,
    shipped) beside ``single_net``/``single_model`` and the baselines, all on the same
    folds; ``comparison``: one row per commodity and horizon (`comparison`)."""

    spec: Spec
    series: dict[str, Assessment]
    comparison: pd.DataFrame
    final: Pipeline | None = None  # the pooled net fitted on every labelled origin, if asked


def assess_pooled(spec: Spec, pooled: PooledSamples, verbose: int = 0, single: bool = True,
                  on_fold: Callable[[int, int], None] | None = None, final: bool = False
                  ) -> PooledAssessment:
    """Backtest the pooled net, and per commodity the baselines and (``single``) its own
    single-commodity net, on the spec's folds; score each commodity beside its random walk.
    With ``final``, also fit the pooled net on all of ``pooled`` (beside its folds)."""
    net_preds, net_seconds, fitted = backtest_pooled(
        spec, pooled, build_pooled_pipeline(spec, verbose), on_fold,
        final=build_pooled_pipeline(spec, verbose) if final else None)
    stride = spec.validation.stride
    out = {}
    for c in pooled.commodities:
        sub = spec.for_target(c)
        models = dict(baselines_for(sub))
        if single:
            models[SINGLE] = build_pipeline(sub, verbose=verbose)
        preds, seconds, _ = backtest(sub, pooled.members[c], models)
        if single:
            as_net = _renamed(preds, SINGLE, NET) + [p for p in preds if p.model == VOL]
            preds += _renamed(shipped_predictions(as_net, sub.forecast.combine, stride)[0],
                              MODEL, SINGLE_MODEL)
            seconds[SINGLE_MODEL] = seconds[SINGLE]
        out[c] = score_predictions(sub, net_preds[c] + preds, {**seconds, NET: net_seconds},
                                   pooled.members[c].dates)
    return PooledAssessment(spec, out, comparison(out, stride), fitted)


def comparison(series: dict[str, Assessment], stride: int = 1) -> pd.DataFrame:
    """Per commodity and horizon on the reported span: MASE and the Diebold-Mariano p
    (absolute errors) against the random walk of the pooled and the single-commodity
    model, shipped and raw, and the DM p of pooled against single (``dm_stat < 0``:
    the pooled errors are smaller)."""
    rows = []
    for c, a in series.items():
        s = a.summary.set_index(["horizon", "model"])
        reported = [p for p in a.predictions if p.role == "test"] or a.predictions
        for horizon in a.spec.horizons:
            row = {"series": c, "horizon": horizon,
                   "n": int(s.loc[(horizon, "random_walk"), "n"]),
                   "rw_mae": float(s.loc[(horizon, "random_walk"), "mae"])}
            for name in (MODEL, SINGLE_MODEL, NET, SINGLE):
                if (horizon, name) in s.index:
                    row[f"{name}_mase"] = float(s.loc[(horizon, name), "mase"])
                    row[f"{name}_dm_p"] = float(s.loc[(horizon, name), "dm_p_abs"])
            for pooled_name, single_name in ((MODEL, SINGLE_MODEL), (NET, SINGLE)):
                dm = dm_table([p for p in reported if p.horizon == horizon
                               and p.model in (pooled_name, single_name)],
                              model=pooled_name, stride=stride)
                if len(dm):
                    row[f"{pooled_name}_vs_single_dm_stat"] = float(dm["dm_stat_abs"].iloc[0])
                    row[f"{pooled_name}_vs_single_dm_p"] = float(dm["dm_p_abs"].iloc[0])
            rows.append(row)
    return pd.DataFrame(rows)


def format_comparison(table: pd.DataFrame) -> str:
    """The comparison as a fixed-width table: MASE (DM p against the random walk)."""
    def cell(row, name):
        mase, p = row.get(f"{name}_mase"), row.get(f"{name}_dm_p")
        if mase is None or not np.isfinite(mase):
            return "-"
        return f"{mase:.3f} ({p:.3f})" if np.isfinite(p) else f"{mase:.3f}"

    head = (f"{'series':<8}{'h':<4}{'n':>5}  {'pooled model':>15}{'single model':>15}"
            f"{'pooled net':>15}{'single net':>15}{'p pooled=single':>17}")
    lines = ["MASE against each commodity's random walk (DM p, absolute errors)", head,
             "-" * len(head)]
    for _, r in table.iterrows():
        p = r.get(f"{MODEL}_vs_single_dm_p", float("nan"))
        p_net = r.get(f"{NET}_vs_single_dm_p", float("nan"))
        lines.append(f"{r['series']:<8}{r['horizon']:<4}{int(r['n']):>5}  "
                     f"{cell(r, MODEL):>15}{cell(r, SINGLE_MODEL):>15}{cell(r, NET):>15}"
                     f"{cell(r, SINGLE):>15}{_p(p) + ' / ' + _p(p_net):>17}")
    return "\n".join(lines)


def _p(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"
