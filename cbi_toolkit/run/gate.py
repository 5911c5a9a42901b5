"""The deploy gate: does the shipped model's walk-forward skill allow publishing it?"""

from __future__ import annotations

import math

import pandas as pd

from cbi_toolkit.spec import GateConfig

#: The shipped model's name in the walk-forward tables.
MODEL = "model"


def check_gate(gate: GateConfig, summary: pd.DataFrame, intervals: str) -> list[str]:
    """Reasons the model fails the deploy gate (empty: it passes), from the pooled
    metrics of the reported span."""
    failures = []
    prefix = "conformal_coverage" if intervals == "conformal" else "coverage"
    for row in summary[summary["model"] == MODEL].itertuples():
        if gate.max_mase is not None and not row.mase <= gate.max_mase:
            failures.append(f"{row.horizon}: MASE {row.mase:.3f} > max_mase {gate.max_mase}")
        if gate.worse_p is not None and row.dm_stat_abs > 0 and row.dm_p_abs < gate.worse_p:
            failures.append(f"{row.horizon}: worse than the random walk (MASE {row.mase:.3f}, "
                            f"Diebold-Mariano p {row.dm_p_abs:.3f} < gate.worse_p {gate.worse_p})")
        for pct, band in (("80", gate.coverage_80), ("95", gate.coverage_95)):
            value = getattr(row, f"{prefix}_{pct}")
            if band is not None and not band[0] <= value <= band[1]:
                failures.append(f"{row.horizon}: {intervals} {pct}% coverage {value:.3f} outside "
                                f"[{band[0]}, {band[1]}]{_coverage_error(row, prefix, pct)}")
    return failures


def _coverage_error(row, prefix: str, pct: str) -> str:
    """" (HAC s.e. ..., p ...)" of the coverage, when the summary has its test."""
    se, p = (getattr(row, f"{prefix}_{pct}_{k}", float("nan")) for k in ("se", "p"))
    return f" (HAC s.e. {se:.3f}, p {p:.3f})" if math.isfinite(se) and math.isfinite(p) else ""
