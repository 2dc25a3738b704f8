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
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
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
    targets [S, H] (NaN where unknown); edge_index [2, E] over the S rows (never across days),
    where the index S is a sink: an edge of the day's graph whose stock is not in the batch
    that day joins the sink at both ends, so the edge count never depends on the data (see
    GraphBlock); edge_attr [E, 2]. `lookback` L is the window length; `seq_end >= 2 * (L - 1)`
    for every row, so each row has its L-step window plus L - 1 earlier steps of normalisation
    context (`history_checked`: the builder guarantees it, so the model need not read seq_end).
    With a precomputed FAN (atft_core/nn/fan.py `FanInputs`): fan_seq [U, T-L+1, F] the FAN
    residuals of seq[:, L-1:], fan_summary [S, 2F] the rows' summaries, fan_key (window, top_k).
    From make_day_batch also: day_slot [S] the row's place among its day's rows, day_width the
    most rows of one day (the per-date loss terms use a [B, day_width] grid, atft_core.loss),
    and host_rows, numpy copies of (day, stock) for whoever maps predictions back to the panel.
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
    day_slot: Tensor | None = None
    day_width: int = 0
    host_rows: tuple[np.ndarray, np.ndarray] | None = None
    history_checked: bool = False

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
                   edge_index=edge_index, edge_attr=edge_attr, history_checked=True)


def make_day_batch(panel: "Panel", day_indices: Sequence[int] | Tensor | np.ndarray, lookback: int,
                   graphs: "GraphCache | None", device: torch.device | str,
                   fan: FanInputs | None = None) -> DayBatch:
    """Gather the stock-days of `day_indices` from `panel` into one DayBatch on `device`.

    Rows are the stocks valid on each day whose window fits in the panel (day index >=
    lookback - 1), in (day, stock) order. `seq` spans from 2 * (lookback - 1) days before the
    earliest day to the latest one, so pass days that lie close together (the trainer and the
    predictors pass runs of consecutive days); days before the panel's start are zeros.
    Graph edges (from `graphs.for_day(t)`) link rows of the same day; an edge whose stock is
    not in the batch that day goes to the sink (see DayBatch); with `graphs=None` the batch has
    no edges. With `fan`, the batch also carries the precomputed FAN residuals and summaries of
    its steps and rows. One-off form of `DayBatcher` (which keeps the host copy of the mask).
    """
    return DayBatcher(panel, lookback, graphs, device, fan)(day_indices)


class DayBatcher:
    """Builds the DayBatches of one panel without waiting for the device.

    Which stock-days are rows, which histories they read and where each sits in its day depend
    only on the validity mask, so that bookkeeping runs on the host in numpy, from a copy of the
    mask taken once here; its index arrays then reach the device in one copy (pinned and
    asynchronous on CUDA). Gathering features, targets and FAN inputs happens where the panel
    lives, the day graphs' edges where the graphs live (`GraphCache.device`), and only results
    move to `device`. Nothing reads a device value back, so on a GPU the host can queue the next
    step's work while the device still runs this one.

    With `pad` (runtime.compile: compiled code wants few distinct shapes) every size (rows,
    histories, history steps, edges, days and the loss's day width) is rounded up to a bucket
    (`bucket`) and never shrinks below the largest bucket this batcher has used (`high`): a short
    block of days at an epoch's start or end then reuses the full blocks' shapes, so the shapes
    only grow and a run compiles a few times, not once per block length. The extra rows belong
    to extra days without targets (so no loss term sees them; at most `width` rows each) and
    read an all-zero history; extra steps are zeros after the last day (no row reads them:
    every layer before a row's day is causal); extra edges join the sink. `host_rows` lists the
    real rows only.
    """

    def __init__(self, panel: "Panel", lookback: int, graphs: "GraphCache | None", device: torch.device | str,
                 fan: FanInputs | None = None, pad: bool = False) -> None:
        if lookback < 1:
            raise ValueError(f"make_day_batch: lookback must be >= 1, got {lookback}")
        if fan is not None and fan.window != lookback:
            raise ValueError(f"make_day_batch: FAN was computed with window {fan.window}, lookback is {lookback}")
        self.panel, self.lookback, self.graphs, self.fan, self.pad = panel, lookback, graphs, fan, pad
        self.high = dict.fromkeys(("rows", "histories", "steps", "width", "days", "edges"), 0)
        self.device = _canonical(device)
        self.source = panel.features.device
        self.valid = panel.valid.cpu().numpy()                              # [D, N], host copy

    def __call__(self, day_indices: Sequence[int] | Tensor | np.ndarray, history_from: int | None = None) -> DayBatch:
        """The batch of `day_indices`. `history_from`: an earlier day where the histories start
        anyway (data-parallel training: a rank's part of a step reads the history from where the
        whole step's starts, so the encoder sees the context it would see in one process)."""
        plan = _RowPlan.of(self.valid, _host_days(day_indices), self.lookback, history_from)
        if self.pad:
            plan = plan.padded(self._grown)
        panel, fan = self.panel, self.fan
        edges = self.graphs is not None
        at_source = _Indices(plan, self.source, edges)
        seq = _histories(panel.features, at_source.span, at_source.used, plan.real_histories)      # [U, T, F]
        targets = panel.targets[at_source.row_day, at_source.stock]
        fan_seq = fan_summary = None
        if fan is not None:
            fan_seq = _histories(fan.residual, at_source.span[self.lookback - 1:], at_source.used, plan.real_histories)
            fan_summary = fan.summary[at_source.row_day, at_source.stock]
        if plan.n_real_rows < plan.n_rows:  # padding rows: no target, no FAN summary
            real = at_source.day < len(plan.counts)
            targets = torch.where(real[:, None], targets, torch.full_like(targets, float("nan")))
            fan_summary = fan_summary * real[:, None].to(fan_summary.dtype) if fan_summary is not None else None
        here = at_source if self.device == self.source else _Indices(plan, self.device, edges)
        edge_index, edge_attr = self._edges(plan, here)
        return DayBatch(
            seq=_moved(seq, self.device), seq_row=here.seq_row, seq_end=here.seq_end, lookback=self.lookback,
            day=here.day, day_index=here.days, stock=here.stock, targets=_moved(targets, self.device),
            edge_index=edge_index, edge_attr=edge_attr, fan_seq=_moved(fan_seq, self.device),
            fan_summary=_moved(fan_summary, self.device), fan_key=(fan.window, fan.top_k) if fan is not None else None,
            day_slot=here.slot, day_width=plan.width,
            host_rows=(plan.day[:plan.n_real_rows], plan.stock[:plan.n_real_rows]), history_checked=True)

    def _edges(self, plan: "_RowPlan", here: "_Indices") -> tuple[Tensor, Tensor]:
        """Each day's graph over the rows: stock -> row of that day, or the sink (both ends)."""
        graphs, sink = self.graphs, plan.n_rows
        if graphs is None or sink == 0:
            return (torch.zeros(2, 0, dtype=torch.long, device=self.device),
                    torch.zeros(0, EDGE_ATTR_DIM, dtype=torch.float32, device=self.device))
        graph_device = _canonical(graphs.device)
        row_of = here.row_of if graph_device == self.device else _Indices(plan, graph_device, True).row_of
        indices, attrs = [], []
        for b, t in enumerate(plan.days[:len(plan.counts)].tolist()):
            if plan.counts[b] == 0:
                continue
            ei, ea = graphs.for_day(t)
            rows = row_of[b][ei]                                            # [2, E]: rows or the sink
            dead = (rows == sink).any(0, keepdim=True)
            indices.append(rows.masked_fill(dead, sink))
            attrs.append(ea)
        n_edges = sum(i.shape[1] for i in indices)                          # shapes: known on the host
        if self.pad and self._grown("edges", n_edges) > n_edges:
            extra = self.high["edges"] - n_edges
            indices.append(torch.full((2, extra), sink, dtype=torch.long, device=graph_device))
            attrs.append(torch.zeros(extra, EDGE_ATTR_DIM, dtype=torch.float32, device=graph_device))
        if not indices:   # only padding rows
            return (torch.zeros(2, 0, dtype=torch.long, device=self.device),
                    torch.zeros(0, EDGE_ATTR_DIM, dtype=torch.float32, device=self.device))
        return (_moved(torch.cat(indices, dim=1), self.device),
                _moved(torch.cat(attrs, dim=0).to(torch.float32), self.device))

    def _grown(self, size: str, n: int) -> int:
        """The padded size for `n` of `size`: its bucket, or the largest one used before."""
        self.high[size] = max(self.high[size], bucket(n))
        return self.high[size]


def bucket(n: int) -> int:
    """`n` rounded up to the next of 8 sizes per doubling (at most 12.5% more; exact below 16),
    so that padded batches take few distinct shapes."""
    if n < 16:
        return n
    step = 1 << (n.bit_length() - 4)
    return -(-n // step) * step


def _canonical(device: torch.device | str) -> torch.device:
    """'cuda' names the current GPU; tensors report it with its index ('cuda:0')."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _host_days(day_indices: Sequence[int] | Tensor | np.ndarray) -> np.ndarray:
    if isinstance(day_indices, Tensor):
        day_indices = day_indices.cpu().numpy()   # callers that care pass numpy (no device read)
    return np.asarray(day_indices, dtype=np.int64).reshape(-1)


@dataclass
class _RowPlan:
    """The host-side bookkeeping of one batch (numpy, [S] unless noted)."""

    days: np.ndarray        # [B] panel day indices (-1: a padding day)
    day: np.ndarray         # 0..B-1 (B and later: padding days)
    stock: np.ndarray       # panel stock index (0 for padding)
    row_day: np.ndarray     # panel day index (days[day]; days[0] for padding)
    used: np.ndarray        # [U] stocks with a history
    seq_row: np.ndarray
    seq_end: np.ndarray
    span: np.ndarray        # [T] panel days of the histories (-1: a zero step)
    slot: np.ndarray        # place among the day's rows
    counts: np.ndarray      # [B] rows per (real) day
    row_of: np.ndarray      # [B, N] row of (day, stock), or n_rows (the sink)
    n_real_rows: int
    real_histories: int     # the first histories are real, the rest are zeros
    width: int

    @property
    def n_rows(self) -> int:
        return len(self.day)

    @classmethod
    def of(cls, valid: np.ndarray, days: np.ndarray, lookback: int, history_from: int | None = None) -> "_RowPlan":
        n_days, n_stocks = valid.shape
        if days.size and (days.min() < 0 or days.max() >= n_days):
            raise IndexError(f"make_day_batch: day indices must be in 0..{n_days - 1}, got {days.tolist()}")
        ok = valid[days] & (days >= lookback - 1)[:, None]                  # [B, N]
        day, stock = np.nonzero(ok)                                         # (day, stock) order
        used, seq_row = np.unique(stock, return_inverse=True)
        start = int(days.min()) if days.size else (history_from or 0)
        first = (start if history_from is None else min(start, history_from)) - 2 * (lookback - 1)
        last = int(days.max()) if days.size else first + 2 * (lookback - 1)   # an empty part: a valid shape
        counts = ok.sum(1)
        rows = np.arange(len(day))
        row_of = np.full(ok.shape, len(day), dtype=np.int64)
        row_of[day, stock] = rows
        return cls(days=days, day=day, stock=stock, row_day=days[day], used=used, seq_row=seq_row.reshape(-1),
                   seq_end=days[day] - first, span=np.arange(first, last + 1), slot=rows - (np.cumsum(counts) - counts)[day],
                   counts=counts, row_of=row_of, n_real_rows=len(day), real_histories=len(used),
                   width=int(counts.max()) if len(counts) else 0)

    def padded(self, grown: Callable[[str, int], int]) -> "_RowPlan":
        """Every size padded to `grown(size, n)` (see DayBatcher): padding rows on extra days,
        `width` rows per day at most, reading a zero history."""
        n_rows, n_hist = grown("rows", self.n_rows), grown("histories", len(self.used) + 1)
        n_steps, width = grown("steps", len(self.span)), grown("width", max(self.width, 1))
        extra = n_rows - self.n_rows
        n_days = grown("days", len(self.days) + -(-extra // width))
        fill = lambda a, value, n: np.concatenate([a, np.full(n, value, dtype=np.int64)])  # noqa: E731
        row_of = np.where(self.row_of == self.n_rows, n_rows, self.row_of)
        first_day = int(self.days[0]) if len(self.days) else 0
        pad_row = np.arange(extra)
        return _RowPlan(
            days=fill(self.days, -1, n_days - len(self.days)),
            day=np.concatenate([self.day, len(self.days) + pad_row // width]), stock=fill(self.stock, 0, extra),
            row_day=fill(self.row_day, first_day, extra), used=fill(self.used, 0, n_hist - len(self.used)),
            seq_row=fill(self.seq_row, len(self.used), extra), seq_end=fill(self.seq_end, n_steps - 1, extra),
            span=fill(self.span, -1, n_steps - len(self.span)), slot=np.concatenate([self.slot, pad_row % width]),
            counts=self.counts, row_of=row_of, n_real_rows=self.n_rows, real_histories=self.real_histories,
            width=width)


class _Indices:
    """A plan's index arrays as int64 tensors on one device, sent there in one copy
    (`row_of`, [B, N], only for batches with graph edges)."""

    NAMES = ("days", "day", "stock", "row_day", "used", "seq_row", "seq_end", "span", "slot")

    def __init__(self, plan: _RowPlan, device: torch.device, with_row_of: bool) -> None:
        names = self.NAMES + (("row_of",) if with_row_of else ())
        arrays = [np.asarray(getattr(plan, name), dtype=np.int64) for name in names]
        packed = torch.from_numpy(np.concatenate([a.reshape(-1) for a in arrays]))
        if device.type == "cuda":
            packed = packed.pin_memory().to(device, non_blocking=True)
        parts = torch.split(packed, [a.size for a in arrays])
        for name, array, part in zip(names, arrays, parts):
            setattr(self, name, part.view(array.shape))


def _moved(value: Tensor | None, device: torch.device) -> Tensor | None:
    if value is None or value.device == device:
        return value
    return value.to(device, non_blocking=value.device.type == "cpu" and value.is_pinned())


def _histories(values: Tensor, span: Tensor, stocks: Tensor, real: int | None = None) -> Tensor:
    """values [D, N, C] at days `span` (zeros where span < 0: before day 0, or padding) for
    `stocks` -> [U, T, C]; histories after the first `real` are zeros (padding)."""
    out = values[span.clamp(min=0)[:, None], stocks[None, :]]             # [T, U, C]
    out = out * (span >= 0).to(out.dtype)[:, None, None]
    if real is not None and real < len(stocks):
        out[:, real:] = 0
    return out.transpose(0, 1).contiguous()
