"""The default deploy gate: no forecast reaches the sink from a model the random walk
beats significantly, or whose conformal bands miss their nominal coverage by > 5 points."""

from __future__ import annotations

import pandas as pd

from cbi_toolkit.run.gate import check_gate
from cbi_toolkit.spec import GateConfig


def row(**kw) -> dict:
    base = {"horizon": "1m", "model": "model", "mase": 1.0, "dm_stat_abs": 0.0, "dm_p_abs": 0.9,
            "conformal_coverage_80": 0.80, "conformal_coverage_95": 0.95,
            "coverage_80": 0.80, "coverage_95": 0.95}
    return base | kw


def test_default_gate_refuses_a_model_significantly_worse_than_the_random_walk():
    gate = GateConfig()
    assert check_gate(gate, pd.DataFrame([row()]), "conformal") == []
    worse = pd.DataFrame([row(mase=1.04, dm_stat_abs=2.9, dm_p_abs=0.004)])
    (failure,) = check_gate(gate, worse, "conformal")
    assert "worse than the random walk" in failure and "0.004" in failure
    # significantly *better* passes; worse but not significantly passes
    assert check_gate(gate, pd.DataFrame([row(dm_stat_abs=-2.9, dm_p_abs=0.004)]), "conformal") == []
    assert check_gate(gate, pd.DataFrame([row(dm_stat_abs=1.0, dm_p_abs=0.3)]), "conformal") == []


def test_default_gate_holds_coverage_within_five_points():
    gate = GateConfig()
    off = pd.DataFrame([row(conformal_coverage_80=0.74, conformal_coverage_95=0.89)])
    failures = check_gate(gate, off, "conformal")
    assert len(failures) == 2 and all("coverage" in f for f in failures)
    assert check_gate(gate, pd.DataFrame([row(conformal_coverage_80=0.76)]), "conformal") == []
    # a spec loosens it explicitly
    loose = GateConfig(worse_p=None, coverage_80=None, coverage_95=None)
    assert check_gate(loose, pd.DataFrame([row(dm_stat_abs=3, dm_p_abs=0.001,
                                               conformal_coverage_80=0.5)]), "conformal") == []


def test_a_coverage_failure_says_how_well_the_coverage_is_known():
    off = pd.DataFrame([row(conformal_coverage_80=0.66, conformal_coverage_80_se=0.081,
                            conformal_coverage_80_p=0.084)])
    (failure,) = check_gate(GateConfig(), off, "conformal")
    assert "0.660 outside" in failure and "HAC s.e. 0.081, p 0.084" in failure
