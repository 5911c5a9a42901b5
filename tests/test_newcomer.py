"""A newcomer's first hour: the README's Python snippet and the example run as written; a
run's log has no escape codes or library noise and ends with what to do next; the report
has the fan chart and the skill plot; target dates in the sink and --predict are sessions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cbi_toolkit.cli import main
from cbi_toolkit.report import fan_history, skill_per_fold
from cbi_toolkit.sinks.duckdb import DuckDBSink
from cbi_toolkit.trading_calendar import is_session, target_date

ROOT = Path(__file__).resolve().parents[1]
TINY = ["window=20", "model.hidden_dim=8", "model.num_heads=2", "model.num_layers=1",
        "training.max_epochs=2", "training.batch_size=128", "validation.n_splits=2",
        "validation.test_start=2023-01-03", "validation.test_size=126",
        "gate.max_mase=null", "gate.worse_p=null", "gate.coverage_80=null", "gate.coverage_95=null"]
ESC = "\x1b"


def python_env(data_dir: Path, tmp_path: Path) -> dict[str, str]:
    """This checkout's code, the snapshot, one thread, a fresh matplotlib cache (so its
    first-use messages would show)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "CBI_DATA_DIR": str(data_dir),
            "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp_path / "mpl")}


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "the README holds one Python snippet"
    return blocks[0]


def test_readme_snippet_runs_as_written(data_dir, tmp_path):
    code = readme_snippet()
    assert len(code.strip().splitlines()) <= 10
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=python_env(data_dir, tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "random_walk" in done.stdout and "mase" in done.stdout
    # the 1m forecast from the snapshot's last day, 2023-12-29, is for the 21st CBOT session
    assert "2024-01-31" in done.stdout
    assert ESC not in done.stdout + done.stderr


def test_example_forecasts_prices_and_draws_the_fan_chart(data_dir, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "forecast_prices.py"), str(out)],
                          cwd=tmp_path, capture_output=True, text=True,
                          env=python_env(data_dir, tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    dates = re.findall(r"2023-12-29\s+(\d{4}-\d\d-\d\d)", done.stdout)
    assert dates == [target_date("2023-12-29", n).isoformat() for n in (5, 21, 63, 126, 252)]
    for name in ("fan_chart.png", "skill.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, data_dir):
    """zl_all_quick at a tiny size, its stdout and stderr written to a file (not a terminal)."""
    tmp = tmp_path_factory.mktemp("logged")
    args = [str(ROOT / "specs" / "zl_all_quick.yaml"), "--runs-dir", str(tmp / "runs"),
            "--sink", f"duckdb://{tmp / 'f.duckdb'}"]
    for item in TINY:
        args += ["--set", item]
    log = tmp / "run.log"
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", "cbi_toolkit.cli", *args], cwd=ROOT,
                              stdout=fh, stderr=subprocess.STDOUT,
                              env=python_env(data_dir, tmp), timeout=900)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    return tmp, next((tmp / "runs").iterdir()), text


def test_fan_chart_history_scales_with_the_furthest_horizon(data_dir):
    prices = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", index_col="date",
                         parse_dates=True)["close"]
    origin = prices.index[-1]

    def shown(*targets: str) -> pd.Timedelta:
        fc = pd.DataFrame({"origin_date": origin, "target_date": pd.to_datetime(list(targets))})
        kept = fan_history(prices, fc)
        assert kept.index[-1] == origin
        return origin - kept.index[0]

    one_week = shown("2024-01-08")
    assert pd.Timedelta(days=150) < one_week <= pd.Timedelta(days=183)  # the six-month floor
    three_months = shown("2024-01-08", "2024-03-28")
    assert pd.Timedelta(days=330) < three_months <= pd.Timedelta(days=4 * 90)
    assert shown("2024-12-27") <= pd.Timedelta(days=731)  # capped at two years


def test_log_file_is_plain_text_with_progress_and_next_steps(logged_run):
    _, run_dir, text = logged_run
    assert ESC not in text
    assert "fontManager" not in text
    assert re.search(r"walk-forward: fold 1/\d+ done", text) and "left" in text
    # the epoch table's time-left column; fits in worker processes prefix their lines ([fold 2])
    assert re.search(r"^(\[[^\]]+\] )?\s+epoch\s+eta\s", text, flags=re.M)
    tail = text.rstrip().splitlines()[-4:]
    assert tail[0] == "next:"
    assert str(run_dir / "report.md") in tail[1]
    assert f"cbi-run --predict {run_dir}" in tail[2]


def test_report_has_fan_chart_and_skill_plot(logged_run):
    _, run_dir, _ = logged_run
    report = (run_dir / "report.md").read_text()
    for name in ("fan_chart.png", "skill.png"):
        assert f"]({name})" in report
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"


def test_skill_is_relative_to_the_random_walk_on_the_same_fold(logged_run):
    _, run_dir, _ = logged_run
    folds = pd.read_csv(run_dir / "metrics_folds.csv")
    skill = skill_per_fold(folds)
    row = skill[(skill["model"] == "model") & (skill["horizon"] == "3m")
                & (skill["fold"] == 1)].iloc[0]
    rw = folds[(folds["model"] == "random_walk") & (folds["horizon"] == "3m")
               & (folds["fold"] == 1)].iloc[0]
    assert row["crps_skill"] == pytest.approx(row["crps"] / rw["crps"])
    assert "random_walk" not in set(skill["model"])


def test_sink_and_predict_target_dates_follow_the_exchange_calendar(logged_run, data_dir):
    tmp, run_dir, _ = logged_run
    rows = DuckDBSink(tmp / "f.duckdb").read_all().sort_values("target_date")
    got = [str(d)[:10] for d in rows["target_date"]]
    # 2023-12-29 + 5/21/63 sessions: New Year's Day, MLK Day, Presidents' Day, Good Friday shut
    assert got[:3] == ["2024-01-08", "2024-01-31", "2024-04-02"]
    assert all(is_session(d) for d in got)
    assert main(["--predict", str(run_dir), "--data-dir", str(data_dir), "-q",
                 "--sink", f"duckdb://{tmp / 'f.duckdb'}"]) == 0
    predicted = pd.read_csv(run_dir / "predictions" / "origin-2023-12-29.csv")
    assert sorted(predicted["target_date"]) == got


def test_help_ends_with_what_to_do_next(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    last = out.rstrip().split("\n\n")[-1]
    assert last.startswith("next:") and "--predict" in last and "report.md" in last
