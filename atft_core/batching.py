"""A batch is one or several whole trading days: every valid stock of each day, never a mix.

Cross-sectional losses (RankIC, CS-IC, Sharpe) and the stock graph only mean something within a
date, so `make_day_batch` takes day indices and returns all valid stock-days of those days,
their targets and the day graphs re-indexed to the rows.

The inputs are stored once per *stock*, not once per stock-day: `seq` holds each stock's
features over the batch's whole day span plus `context` earlier days, and a row (stock s, day t)
points at its day with `seq_row`/`seq_end`. For B consecutive days that is L + B - 1 + context
steps per stock instead of B x L windows, which is what lets the encoder run its recurrence once
per stock for all B days (see atft_core/nn/encoder.py). The windows of the old contract are
still available as `DayBatch.x`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from atft_core.graph import EDGE_ATTR_DIM
from atft_core.nn.fan import FanInputs

if TYPE_CHECKING:  # pragma: no cover - import only for type hints (avoids a hard import cycle)
    from atft_core.data.panel import Panel
    from atft_core.graph import GraphCache


@dataclass
class DayBatch:
    """The valid stock-days (rows) of B trading days.

    Shapes: seq [U, T, F] features of the U stocks of the batch over T consecutive panel days
    (zeros before the panel's first day); seq_row [S] which of the U histories a row belongs
    to; seq_end [S] the step of the row's own day in that history (every step <= seq_end is a
    day <= t); day [S] 0..B-1; day_index [B] panel day indices; stock [S] panel stock indices;
    targets [S, H] (NaN where unknown); edge_index [2, E] over the S rows (never across days);
    edge_attr [E, 2]. `lookback` L is the window length; `seq_end >= 2 * (L - 1)` for every row,
    so each row has its L-step window plus L - 1 earlier steps of normalisation context.
    With a precomputed FAN (atft_core/nn/fan.py `FanInputs`): fan_seq [U, T-L+1, F] the FAN
    residuals of seq[:, L-1:], fan_summary [S, 2F] the rows' summaries, fan_key (window, top_k).
    """

    seq: Tensor
    seq_row: Tensor
    seq_end: Tensor
    lookback: int
    day: Tensor
    day_index: Tensor
    stock: Tensor
    targets: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    fan_seq: Tensor | None = None
    fan_summary: Tensor | None = None
    fan_key: tuple[int, int] | None = None

    @property
    def n_rows(self) -> int:
        """S, the number of stock-days."""
        return self.seq_row.shape[0]

    @property
    def n_days(self) -> int:
        """B, the number of days."""
        return self.day_index.shape[0]

    @property
    def x(self) -> Tensor:
        """The rows' lookback windows [S, L, F] (days t-L+1..t), gathered from `seq`."""
        steps = self.seq_end[:, None] + torch.arange(-self.lookback + 1, 1, device=self.seq_end.device)
        return self.seq[self.seq_row[:, None], steps]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "DayBatch":
        """A copy with every tensor on `device`."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, Tensor):
                moved[name] = value.to(device, non_blocking=non_blocking)
        return DayBatch(**moved)

    @classmethod
    def from_windows(cls, x: Tensor, day: Tensor, day_index: Tensor, stock: Tensor, targets: Tensor,
                     edge_index: Tensor, edge_attr: Tensor) -> "DayBatch":
        """A batch whose every row has its own history: its window x [S, L, F] after L - 1
        zero steps of context (for tests and benchmarks that make windows directly)."""
        s, lookback, n_features = x.shape
        seq = torch.cat([x.new_zeros(s, lookback - 1, n_features), x], dim=1)
        return cls(seq=seq, seq_row=torch.arange(s, device=x.device),
                   seq_end=torch.full((s,), 2 * lookback - 2, dtype=torch.long, device=x.device),
                   lookback=lookback, day=day, day_index=day_index, stock=stock, targets=targets,
                   edge_index=edge_index, edge_attr=edge_attr)


def make_day_batch(panel: "Panel", day_indices: Sequence[int] | Tensor, lookback: int,
                   graphs: "GraphCache | None", device: torch.device | str,
                   fan: FanInputs | None = None) -> DayBatch:
    """Gather the stock-days of `day_indices` from `panel` into one DayBatch on `device`.

    Rows are the stocks valid on each day whose window fits in the panel (day index >=
    lookback - 1), in (day, stock) order. `seq` spans from 2 * (lookback - 1) days before the
    earliest day to the latest one, so pass days that lie close together (the trainer and the
    predictors pass runs of consecutive days); days before the panel's start are zeros.
    Graph edges (from `graphs.for_day(t)`) are kept only between rows of the same day and
    re-indexed to rows; with `graphs=None` the batch has no edges. With `fan`, the batch also
    carries the precomputed FAN residuals and summaries of its steps and rows.
    Indexing happens where the panel lives; only the result is moved to `device`.
    """
    if lookback < 1:
        raise ValueError(f"make_day_batch: lookback must be >= 1, got {lookback}")
    src = panel.features.device
    days = torch.as_tensor(day_indices, dtype=torch.long, device=src).reshape(-1)
    n_days, n_stocks = panel.valid.shape
    if days.numel() and (int(days.min()) < 0 or int(days.max()) >= n_days):
        raise IndexError(f"make_day_batch: day indices must be in 0..{n_days - 1}, got {days.tolist()}")
    ok = panel.valid[days] & (days >= lookback - 1)[:, None]          # [B, N]
    day, stock = ok.nonzero(as_tuple=True)                              # [S], (day, stock) order
    used, seq_row = torch.unique(stock, return_inverse=True)           # [U], [S]
    first = (int(days.min()) if days.numel() else 0) - 2 * (lookback - 1)
    last = int(days.max()) if days.numel() else first
    span = torch.arange(first, last + 1, device=src)                    # [T]
    seq = _histories(panel.features, span, used)                        # [U, T, F]
    edge_index, edge_attr = _day_edges(ok, day, stock, days, graphs)
    batch = DayBatch(seq=seq, seq_row=seq_row, seq_end=days[day] - first, lookback=lookback,
                     day=day, day_index=days, stock=stock, targets=panel.targets[days[day], stock],
                     edge_index=edge_index, edge_attr=edge_attr)
    if fan is not None:
        if fan.window != lookback:
            raise ValueError(f"make_day_batch: FAN was computed with window {fan.window}, lookback is {lookback}")
        batch.fan_seq = _histories(fan.residual, span[lookback - 1:], used)
        batch.fan_summary = fan.summary[days[day], stock]
        batch.fan_key = (fan.window, fan.top_k)
    return batch.to(device)


def _histories(values: Tensor, span: Tensor, stocks: Tensor) -> Tensor:
    """values [D, N, C] at days `span` (zeros before day 0) for `stocks` -> [U, T, C]."""
    out = values[span.clamp(min=0)[:, None], stocks[None, :]]             # [T, U, C]
    out = out * (span >= 0).to(out.dtype)[:, None, None]
    return out.transpose(0, 1).contiguous()


def _day_edges(ok: Tensor, day: Tensor, stock: Tensor, days: Tensor,
               graphs: "GraphCache | None") -> tuple[Tensor, Tensor]:
    """Edges of each day's graph between that day's rows, re-indexed to row numbers."""
    device = ok.device
    if graphs is None or day.numel() == 0:
        return (torch.zeros(2, 0, dtype=torch.long, device=device),
                torch.zeros(0, EDGE_ATTR_DIM, dtype=torch.float32, device=device))
    row_of = torch.full(ok.shape, -1, dtype=torch.long, device=device)  # [B, N] -> row or -1
    row_of[day, stock] = torch.arange(day.numel(), device=device)
    indices, attrs = [], []
    for b, t in enumerate(days.tolist()):
        if not bool(ok[b].any()):
            continue
        ei, ea = graphs.for_day(t)
        rows = row_of[b]
        ei = rows[ei.to(device)]                                        # [2, E] rows or -1
        keep = (ei >= 0).all(0)
        indices.append(ei[:, keep])
        attrs.append(ea.to(device)[keep])
    if not indices:
        return _day_edges(ok, day, stock, days, None)
    return torch.cat(indices, dim=1), torch.cat(attrs, dim=0).to(torch.float32)
