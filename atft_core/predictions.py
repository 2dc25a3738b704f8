"""Per-stock, per-date predictions written as one parquet (for the app and `predict`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import torch

from atft_core.run_files import write_bytes_atomic


def predictions_frame(panel, parts: dict[str, np.ndarray], preds: dict[str, np.ndarray], horizons) -> pl.DataFrame:
    """Long table: Date, Code, split, pred_{h}d, target_{h}d for the valid stocks of each day."""
    frames = []
    for split, days in parts.items():
        if split not in preds:
            continue
        pred = preds[split]
        idx = torch.as_tensor(days, dtype=torch.long)
        valid = panel.valid[idx].cpu().numpy()
        targets = panel.targets[idx].double().cpu().numpy()
        day_pos, stock_pos = np.nonzero(valid & np.isfinite(pred[..., 0]))
        columns = {
            "Date": panel.dates[days[day_pos]],
            "Code": np.asarray(panel.codes, dtype=object)[stock_pos],
            "split": np.full(len(day_pos), split, dtype=object),
        }
        for h_index, horizon in enumerate(horizons):
            columns[f"pred_{horizon}d"] = pred[day_pos, stock_pos, h_index]
            columns[f"target_{horizon}d"] = targets[day_pos, stock_pos, h_index]
        frames.append(pl.DataFrame(columns))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).with_columns(pl.col("Date").cast(pl.Date), pl.col("Code").cast(pl.Utf8), pl.col("split").cast(pl.Utf8))


def write_predictions(path: Path, panel, parts, preds, horizons) -> None:
    """Write the predictions parquet atomically (`write_bytes_atomic`: on a full disk no temp file
    stays behind and the error names the file)."""
    buffer = io.BytesIO()
    predictions_frame(panel, parts, preds, horizons).write_parquet(buffer)
    write_bytes_atomic(Path(path), buffer.getbuffer())
