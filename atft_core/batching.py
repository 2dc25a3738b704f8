"""A batch is one or several whole trading days: every valid stock of each day, never a mix.

Cross-sectional losses (RankIC, CS-IC, Sharpe) and the stock graph only mean something within a
date, so `make_day_batch` takes day indices and returns all valid stock-days of those days, their
lookback windows (slices of the dense panel), targets and the day graphs re-indexed to the rows.
Everything is gathered with tensor indexing: the only Python loop is over the (few) days.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from atft_core.graph import EDGE_ATTR_DIM

if TYPE_CHECKING:  # pragma: no cover - import only for type hints (avoids a hard import cycle)
    from atft_core.data.panel import Panel
    from atft_core.graph import GraphCache


@dataclass
class DayBatch:
    """The valid stock-days of B trading days.

    Shapes: x [S, L, F] lookback windows (days t-L+1..t), day [S] 0..B-1, day_index [B] panel
    day indices, stock [S] panel stock indices, targets [S, H] (NaN where unknown),
    edge_index [2, E] over the S rows (never across days), edge_attr [E, 2].
    """

    x: Tensor
    day: Tensor
    day_index: Tensor
    stock: Tensor
    targets: Tensor
    edge_index: Tensor
    edge_attr: Tensor

    @property
    def n_rows(self) -> int:
        """S, the number of stock-days."""
        return self.x.shape[0]

    @property
    def n_days(self) -> int:
        """B, the number of days."""
        return self.day_index.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "DayBatch":
        """A copy with every tensor on `device`."""
        return DayBatch(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                           for f in fields(self)})


def make_day_batch(panel: "Panel", day_indices: Sequence[int] | Tensor, lookback: int,
                   graphs: "GraphCache | None", device: torch.device | str) -> DayBatch:
    """Gather the stock-days of `day_indices` from `panel` into one DayBatch on `device`.

    Rows are the stocks valid on each day whose window fits in the panel (day index >=
    lookback - 1), in (day, stock) order; the window of a row for day t holds the features of
    days t-lookback+1..t. Graph edges (from `graphs.for_day(t)`) are kept only between rows of
    the same day and re-indexed to rows; with `graphs=None` the batch has no edges.
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
    t = days[day]                                                       # [S]
    steps = torch.arange(-lookback + 1, 1, device=src)                  # [L]
    x = panel.features[t[:, None] + steps, stock[:, None]]              # [S, L, F]
    targets = panel.targets[t, stock]                                   # [S, H]
    edge_index, edge_attr = _day_edges(ok, day, stock, days, graphs)
    batch = DayBatch(x=x, day=day, day_index=days, stock=stock, targets=targets,
                     edge_index=edge_index, edge_attr=edge_attr)
    return batch.to(device)


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
