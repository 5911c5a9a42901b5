"""The warehouse's track record and the dashboard over it, on a DuckDB sink filled by two
real quick runs (tests/browser_support.py): no duplicate rows on a re-run, the scorecard
view equal to the walk-forward numbers computed in Python, the Streamlit app's logic
(AppTest) and the page in a real headless Chromium."""

from __future__ import annotations

import io
import json
import shutil
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cbi_toolkit.dashboard.cli import APP
from cbi_toolkit.evaluation import calibrated, calibrations
from cbi_toolkit.metrics import LEVELS, FoldPrediction, direction_accuracy, mae, mape
from cbi_toolkit.sinks.duckdb import DuckDBSink
from cbi_toolkit.spec import load_spec
from tests.browser_support import dashboard


def test_rerun_adds_no_duplicate_rows(quick_sink):
    first, second = quick_sink["first"], quick_sink["second"]
    # every scored out-of-sample origin (stride 5) of the selection and test folds, and the forecast
    assert first["predictions"] > 200 and first["actuals"] > 4000
    assert second["predictions"] == first["predictions"]
    assert second["actuals"] == first["actuals"]
    assert second["runs"] == first["runs"] + 1  # one row per run and horizon
    rows = DuckDBSink(quick_sink["sink"]).read_all(kind=None)
    assert not rows.duplicated(["series", "kind", "origin_date", "horizon",
                                "model_version"]).any()
    assert (rows["kind"] == "forecast").sum() == 1


def _oos(run_dir, horizon="1m") -> pd.DataFrame:
    oos = pd.read_csv(run_dir / "oos_predictions.csv", parse_dates=["origin_date"])
    return oos[(oos["model"] == "model") & (oos["horizon"] == horizon)]


def test_scorecard_equals_the_walk_forward_numbers(quick_sink, data_dir):
    run_dir = quick_sink["runs"][-1]
    oos = _oos(run_dir)
    assert set(oos["series"]) == {"zl"}  # the artifacts carry the series too
    assert json.loads((run_dir / "model" / "meta.json").read_text())["series"] == "zl"
    sc = DuckDBSink(quick_sink["sink"]).read("scorecard")
    sc = sc[(sc["kind"] == "backtest") & (sc["horizon"] == "1m")]
    assert set(sc["run_id"]) == {run_dir.name}  # the re-run's backtest replaced the first's
    sc = sc.assign(origin_date=pd.to_datetime(sc["origin_date"])).sort_values("origin_date")
    assert list(sc["origin_date"]) == list(oos["origin_date"])  # every out-of-sample origin

    y, mu, sigma, price = (oos[c].to_numpy() for c in ("y", "mu", "sigma", "price"))
    actual, predicted = price * np.exp(y), price * np.exp(mu)
    # the network's mu is float32 in the run, float64 once read from the CSV: rel 1e-6
    np.testing.assert_allclose(sc["actual"], actual, rtol=1e-9)
    assert sc["error"].abs().mean() == pytest.approx(mae(actual, predicted), rel=1e-6)
    assert sc["rw_error"].abs().mean() == pytest.approx(mae(actual, price), rel=1e-9)
    assert sc["abs_pct_error"].mean() == pytest.approx(mape(actual, predicted), rel=1e-6)
    assert sc["rw_abs_pct_error"].mean() == pytest.approx(mape(actual, price), rel=1e-9)
    acc, n = direction_accuracy(y, mu)
    assert sc["direction_hit"].notna().sum() == n
    if n:  # (a forecast of exactly no change, w = 0 on every fold, has no direction)
        assert sc["direction_hit"].dropna().astype(float).mean() == pytest.approx(acc)
    # conformal bands: each fold's calibration from earlier folds only, as the run scored it;
    # each fold on the residuals standardised by the sigma it shipped (metrics.json's
    # combinations), which the net's and the volatility band's rows hold
    every = pd.read_csv(run_dir / "oos_predictions.csv", parse_dates=["origin_date"])
    every = every[every["horizon"] == "1m"]
    preds = [FoldPrediction(m, int(k), "1m", g["y"].to_numpy(), g["mu"].to_numpy(),
                            g["sigma"].to_numpy(), g["price"].to_numpy(),
                            pd.DatetimeIndex(g["origin_date"]), g["role"].iloc[0])
             for (m, k), g in every.groupby(["model", "fold"])]
    # the run's calibration: online, on the residuals realised before each block of the
    # fold, its half-lives and block length as metrics.json records them
    from cbi_toolkit.backtest import labelled_samples
    from cbi_toolkit.calibration import CalibrationPolicy, Combination, model_calibrations
    from cbi_toolkit.run.prepare import prepare

    recorded = json.loads((run_dir / "metrics.json").read_text())["calibration"]
    policy = CalibrationPolicy(recorded["mode"], recorded["halflife"], recorded["every"])
    origins = labelled_samples(prepare(load_spec(run_dir / "spec.yaml"), str(data_dir))[1]).dates
    used = {("1m", c["fold"]): Combination.from_json(c)
            for c in json.loads((run_dir / "metrics.json").read_text())["combination"]["1m"]}
    cals = calibrations(preds, origins, policy) | model_calibrations(preds, used, origins, policy)
    for level in LEVELS:
        pct = int(round(level * 100))
        hits = n = 0
        for p in (p for p in preds if p.model == "model"):
            bands = calibrated(p, cals[("model", "1m", p.fold)])
            known = np.isfinite(bands[f"lo_{pct}"])
            inside = (p.y >= bands[f"lo_{pct}"]) & (p.y <= bands[f"hi_{pct}"])
            hits, n = hits + int(inside[known].sum()), n + int(known.sum())
        col = sc[f"in_{pct}"]
        assert col.notna().sum() == n
        assert col.dropna().astype(float).mean() == pytest.approx(hits / n)
    # and the run's own summary (pooled over the test span, from validation.test_start) says
    # the same over those origins
    start = pd.Timestamp(load_spec(run_dir / "spec.yaml").validation.test_start)
    span = sc[sc["origin_date"] >= start]
    summary = pd.read_csv(run_dir / "metrics.csv")
    model = summary[(summary["model"] == "model") & (summary["horizon"] == "1m")].iloc[0]
    assert len(span) == model["n"]
    assert span["error"].abs().mean() == pytest.approx(model["mae"], rel=1e-9)
    assert span["abs_pct_error"].mean() == pytest.approx(model["mape"], rel=1e-9)
    assert span["in_80"].dropna().astype(float).mean() == pytest.approx(
        model["conformal_coverage_80"], rel=1e-9)


def _app(monkeypatch, url: str) -> AppTest:
    monkeypatch.setenv("CBI_DASHBOARD_SINK", url)
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _datasets(chart) -> list[pd.DataFrame]:
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def test_app_shows_the_warehouse(quick_sink, monkeypatch):
    sink = DuckDBSink(quick_sink["sink"])
    latest, sc = sink.read("latest_predictions"), sink.read("scorecard")
    at = _app(monkeypatch, f"duckdb://{quick_sink['sink']}")
    assert [h.value for h in at.header] == ["Newest forecast: zl", "Scorecard: zl 1m", "Runs"]
    assert at.sidebar.selectbox[0].value == "zl" and at.sidebar.selectbox[1].value == "1m"
    fan, rolling = at.get("vega_lite_chart")
    data = pd.concat(_datasets(fan), ignore_index=True)
    assert latest["predicted_price"].iloc[0] in set(data["predicted_price"].dropna())
    assert latest["upper_95"].iloc[0] in set(data["upper_95"].dropna())
    closes = data["close"].dropna()
    assert 400 < len(closes) < 600  # two years of trading days
    lines = pd.concat(_datasets(rolling), ignore_index=True)
    assert set(lines["line"]) == {"model, backtest (walk-forward, out of sample)",
                                  "random walk, backtest (walk-forward, out of sample)"}
    forecast_table, score_table, runs_table = (t.value for t in at.table)
    assert forecast_table["predicted_price"].iloc[0] == pytest.approx(
        latest["predicted_price"].iloc[0], abs=5e-4)
    column = score_table["backtest (walk-forward, out of sample)"]
    assert float(column["MAE"]) == pytest.approx(sc["error"].abs().mean(), abs=5e-4)
    assert float(column["random walk MAE"]) == pytest.approx(sc["rw_error"].abs().mean(),
                                                             abs=5e-4)
    assert int(column["n"]) == len(sc)
    assert set(runs_table["run"]) == {d.name for d in quick_sink["runs"]}
    assert set(runs_table["gate"]) == {"passed"}

    # the rolling chart follows the metric picked: MAPE over the last 63 predictions
    at.radio[0].set_value("MAPE %").run()
    lines = pd.concat(_datasets(at.get("vega_lite_chart")[1]), ignore_index=True)
    model = lines[lines["line"].str.startswith("model")]
    ordered = sc.assign(target_date=pd.to_datetime(sc["target_date"])).sort_values("target_date")
    assert model["value"].iloc[-1] == pytest.approx(ordered["abs_pct_error"].tail(63).mean())


def test_app_without_a_warehouse_says_what_to_run(tmp_path, monkeypatch):
    at = _app(monkeypatch, f"duckdb://{tmp_path / 'none.duckdb'}")
    assert "cbi-run specs/zl_1m_quick.yaml" in at.info[0].value
    assert not at.get("vega_lite_chart") and not (tmp_path / "none.duckdb").exists()
    at = _app(monkeypatch, "ftp://somewhere/x")
    assert "unknown scheme" in at.error[0].value and "cbi-run" in at.info[0].value


def _wait_for(driver, text: str, timeout: float = 90) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: text in d.find_element(By.TAG_NAME, "body").text)


def _console_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _requested_urls(driver) -> set[str]:
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
    return urls


def test_dashboard_in_a_real_browser(quick_sink, browser, tmp_path):
    from selenium.webdriver.common.by import By

    sink = DuckDBSink(quick_sink["sink"])
    latest, sc = sink.read("latest_predictions"), sink.read("scorecard")
    with dashboard(f"duckdb://{quick_sink['sink']}", tmp_path / "dashboard.log") as url:
        browser.get(url)
        _wait_for(browser, "Runs")
        _wait_for(browser, quick_sink["runs"][-1].name)
        charts = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stVegaLiteChart']")
        assert len(charts) == 2
        for chart in charts:
            browser.execute_script("arguments[0].scrollIntoView()", chart)
            _wait_for_drawing(browser, chart)
        body = browser.find_element(By.TAG_NAME, "body").text
        browser.execute_script("window.scrollTo(0, 0)")
        shot = tmp_path / "dashboard.png"
        browser.save_screenshot(str(shot))
        urls = _requested_urls(browser)
        errors = _console_errors(browser)
    shutil.copy(shot, quick_sink["sink"].parent / "dashboard.png")
    print(f"screenshot: {shot}")
    assert f"{latest['predicted_price'].iloc[0]:.3f}" in body
    assert f"{sc['error'].abs().mean():.3f}" in body          # realised MAE
    assert f"{sc['rw_error'].abs().mean():.3f}" in body       # the random walk's
    assert "backtest (walk-forward, out of sample)" in body
    assert errors == []
    web = [urlsplit(u) for u in urls if urlsplit(u).scheme in ("http", "https", "ws", "wss")]
    assert any(u.path.endswith(".js") for u in web)  # the log did record the page's requests
    assert {u.netloc for u in web} == {urlsplit(url).netloc}, "fetched from outside the app"


def _wait_for_drawing(driver, chart, timeout: float = 60) -> None:
    """Until the chart's pixels are more than background: vega has drawn it."""
    from selenium.webdriver.support.ui import WebDriverWait

    def drawn(_):
        image = Image.open(io.BytesIO(chart.screenshot_as_png)).convert("L")
        pixels = np.asarray(image)
        return pixels.size > 10_000 and (pixels < 200).mean() > 0.01

    WebDriverWait(driver, timeout).until(drawn)


def test_empty_warehouse_page_in_a_real_browser(browser, tmp_path):
    with dashboard(f"duckdb://{tmp_path / 'none.duckdb'}", tmp_path / "dashboard.log") as url:
        browser.get(url)
        _wait_for(browser, "cbi-run specs/zl_1m_quick.yaml")
        browser.save_screenshot(str(tmp_path / "empty.png"))
        errors = _console_errors(browser)
    print(f"screenshot: {tmp_path / 'empty.png'}")
    assert errors == []


def test_app_scores_live_forecasts_apart(tmp_path, monkeypatch, data_dir):
    """Live forecasts whose targets have arrived get their own, labelled column (here
    trailing-drift forecasts from real ZL closes, the closes as actuals)."""
    from cbi_toolkit import track_record
    from tests.test_sink_series import drift_rows

    closes = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv",
                         parse_dates=["date"]).set_index("date")["close"].astype(float)
    sink = DuckDBSink(tmp_path / "f.duckdb")
    batch = drift_rows(closes)
    sink.write(batch)
    sink.write_actuals(track_record.actual_rows(closes, "zl"))
    at = _app(monkeypatch, f"duckdb://{tmp_path / 'f.duckdb'}")
    assert at.sidebar.selectbox[1].options == ["1w", "1m"]
    at.sidebar.selectbox[1].set_value("1m").run()
    score = at.table[1].value
    assert list(score.columns) == ["live"]
    mine = batch[batch["horizon"] == "1m"]
    actual = closes.reindex(mine["target_date"]).to_numpy()
    assert int(score.loc["n", "live"]) == len(mine) == 40
    assert float(score.loc["MAE", "live"]) == pytest.approx(
        np.mean(np.abs(mine["predicted_price"].to_numpy() - actual)), abs=5e-4)
    lines = pd.concat(_datasets(at.get("vega_lite_chart")[1]), ignore_index=True)
    assert set(lines["line"]) == {"model, live", "random walk, live"}
