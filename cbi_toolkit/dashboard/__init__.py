"""``cbi-dashboard``: a Streamlit app over the warehouse (latest forecasts as fan charts,
the scorecard of past forecasts against what happened, the runs). See docs/dashboard.md."""
