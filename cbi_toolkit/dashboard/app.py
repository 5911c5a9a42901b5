"""The Streamlit page (``streamlit run`` executes this file top to bottom on every
interaction). The sink URL comes from ``$CBI_DASHBOARD_SINK`` (``cbi-dashboard --sink``
sets it). Only reading and drawing here; the numbers come from ``metrics``."""

from __future__ import annotations

import os

import altair as alt
import pandas as pd
import streamlit as st

from cbi_toolkit.dashboard.metrics import (
    ROLLING,
    fan,
    rolling_errors,
    runs_table,
    scorecard_summary,
)
from cbi_toolkit.dashboard.warehouse import DEFAULT_SINK, NO_DATA_HINT, Warehouse, read_warehouse
from cbi_toolkit.errors import CbiError

SINK_ENV = "CBI_DASHBOARD_SINK"


@st.cache_data(ttl=60, show_spinner=False)
def _load(url: str) -> Warehouse:
    return read_warehouse(url)


def fan_chart(history: pd.DataFrame, forecast: pd.DataFrame, series: str) -> alt.LayerChart:
    base = alt.Chart(forecast).encode(x=alt.X("target_date:T", title="date"))
    band95 = base.mark_area(opacity=0.2, color="#1f77b4").encode(
        y=alt.Y("lower_95:Q", title=f"{series} close", scale=alt.Scale(zero=False)),
        y2="upper_95:Q", tooltip=["horizon", "target_date:T", "lower_95", "upper_95"])
    band80 = base.mark_area(opacity=0.35, color="#1f77b4").encode(
        y="lower_80:Q", y2="upper_80:Q", tooltip=["horizon", "lower_80", "upper_80"])
    median = base.mark_line(point=True, color="#1f77b4").encode(
        y="predicted_price:Q", tooltip=["horizon", "target_date:T", "predicted_price"])
    actual = alt.Chart(history).mark_line(color="#333333").encode(
        x="date:T", y="close:Q", tooltip=["date:T", "close"])
    return alt.layer(actual, band95, band80, median).properties(height=360)


def rolling_chart(rolling: pd.DataFrame, metric: str) -> alt.Chart:
    lines = sorted(set(rolling["line"]))
    colors = ["#1f77b4" if line.startswith("model") else "#ff7f0e" for line in lines]
    dashes = [[1, 0] if "backtest" in line else [6, 3] for line in lines]
    return alt.Chart(rolling).mark_line(strokeWidth=1.5).encode(
        x=alt.X("target_date:T", title="target date"),
        y=alt.Y("value:Q", title=f"rolling {metric}"),
        color=alt.Color("line:N", title=None, scale=alt.Scale(domain=lines, range=colors),
                        legend=alt.Legend(orient="bottom", labelLimit=400)),
        strokeDash=alt.StrokeDash("line:N", scale=alt.Scale(domain=lines, range=dashes),
                                  legend=None),
        tooltip=["line", "target_date:T", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=300)


def _by_row(summary: pd.DataFrame) -> pd.DataFrame:
    """Metrics as rows, one column per kind; counts as integers, the rest to 3 places."""
    shown = summary.T.astype(object)
    for name, row in shown.iterrows():
        shown.loc[name] = [f"{int(v)}" if name == "n" else f"{v:.3f}" for v in row]
    return shown


def empty_page(url: str, why: str | None = None) -> None:
    st.title("cbi_toolkit forecasts")
    if why:
        st.error(why)
    st.info(f"No forecasts in the warehouse `{url}` yet: {NO_DATA_HINT}.")


def page(url: str) -> None:
    st.set_page_config(page_title="cbi_toolkit forecasts", layout="wide")
    try:
        wh = _load(url)
    except CbiError as exc:
        empty_page(url, str(exc))
        return
    if wh.empty:
        empty_page(url)
        return
    st.title("cbi_toolkit forecasts")
    st.caption(f"warehouse: `{url}`")
    series = st.sidebar.selectbox("series", wh.series)
    horizon = st.sidebar.selectbox("horizon", wh.horizons(series))
    window = st.sidebar.number_input("rolling window (predictions)", 5, 504, 63)

    st.header(f"Newest forecast: {series}")
    history, forecast = fan(wh.latest, wh.actuals, series)
    if forecast.empty:
        st.info(f"No live forecast of {series} in the warehouse.")
    else:
        shown = forecast[forecast["horizon"] != "origin"]
        st.caption(f"origin {wh.latest['origin_date'].max():%Y-%m-%d}; bands 80% (dark) and "
                   "95% (light); the last two years of actual closes")
        st.altair_chart(fan_chart(history, forecast, series), width="stretch")
        st.table(shown.assign(target_date=shown["target_date"].dt.strftime("%Y-%m-%d"))
                 .set_index("horizon").round(3))

    st.header(f"Scorecard: {series} {horizon}")
    sc = wh.scorecard[(wh.scorecard["series"] == series) & (wh.scorecard["horizon"] == horizon)]
    if sc.empty:
        st.info("No prediction of this series and horizon has reached its target date yet.")
    else:
        st.caption("Every prediction whose target date has an actual close, beside the random "
                   "walk (no change) from the same origin. Backtest rows are the runs' "
                   "walk-forward out-of-sample predictions; live rows are forecasts made from "
                   "the newest data of their day.")
        st.table(_by_row(scorecard_summary(sc).set_index("predictions")))
        metric = st.radio("rolling error", list(ROLLING), horizontal=True)
        st.subheader(f"Rolling {metric} over {int(window)} predictions, by target date")
        st.altair_chart(rolling_chart(rolling_errors(sc, int(window), metric), metric),
                        width="stretch")

    st.header("Runs")
    runs = runs_table(wh.runs, series)
    if runs.empty:
        st.info("No runs recorded for this series.")
    else:
        st.table(runs.set_index("created (UTC)").round(3))


page(os.environ.get(SINK_ENV, DEFAULT_SINK))
