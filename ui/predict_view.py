"""The Predict page's pieces: which runs can predict, and the ranked table as a chart."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import polars as pl

from atft_core import runs
from atft_core.run_files import RunFiles

from .charts import CHART_HEIGHT, FIT_WIDTH, LINE_COLORS


def predicting_runs(all_runs: list[runs.RunSummary], runs_dir: Path) -> list[runs.RunSummary]:
    """Runs that can rank stocks: not training now, with a checkpoints/best.pt."""
    return [r for r in all_runs if not r.live and RunFiles(Path(runs_dir) / r.id).best_checkpoint.is_file()]


def ranking_chart(table: pl.DataFrame, score: str, interval: tuple[str, str] | None, title: str) -> alt.LayerChart:
    """Score by rank (1 = highest), coloured by decile, with the quantile heads' interval as a band."""
    base = alt.Chart(table).encode(x=alt.X("rank:Q", title="rank (1 = highest score)", axis=alt.Axis(format="d")))
    layers = []
    if interval:
        low, high = interval
        layers.append(base.mark_area(opacity=0.25, color=LINE_COLORS[6]).encode(
            y=alt.Y(f"{low}:Q", title="score (target units)"), y2=f"{high}:Q"))
    layers.append(base.mark_point(filled=True, size=28).encode(
        y=alt.Y(f"{score}:Q", title="score (target units)"),
        color=alt.Color("decile:O", scale=alt.Scale(scheme="redyellowgreen"), legend=alt.Legend(orient="right")),
        tooltip=["rank:Q", "Code:N", "decile:O", alt.Tooltip(f"{score}:Q", format=".4f"),
                 *([alt.Tooltip(f"{c}:Q", format=".4f") for c in interval] if interval else [])],
    ))
    return alt.layer(*layers).properties(title=title, height=CHART_HEIGHT, autosize=FIT_WIDTH)
