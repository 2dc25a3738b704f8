"""Streamlit helpers of the dashboard (widgets, cached readers, charts); the pages use these."""
