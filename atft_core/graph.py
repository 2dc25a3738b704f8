"""Per-date stock graph from trailing returns: top-k correlation peers plus same-sector edges.

The graph for day t is built from returns of days up to an *anchor* a <= t only (never after
t), so it cannot leak the future. Building costs one [N, N] matmul and two top-k calls, so it is
rebuilt every `graph_rebuild_interval` days and reused in between (`GraphCache`).

Edges are undirected (stored in both directions), deduplicated and without self loops; GATv2
adds self loops itself, so isolated stocks still get their own features through.
"""

from __future__ import annotations

import torch
from torch import Tensor

from atft_core.config import ModelConfig

EDGE_ATTR_DIM = 2
"""Edge features: (trailing-return correlation, same-sector flag)."""

_STD_EPS = 1e-12
"""Columns whose return std is below this are constant: no correlation can be measured."""

_NO_CORR_SCORE = -2.0
"""Ranking score of a sector peer without a measurable correlation: below any real one (>= -1)."""


def empty_graph(device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """An edge-less graph: edge_index [2, 0] long, edge_attr [0, 2] float."""
    return (torch.zeros(2, 0, dtype=torch.long, device=device),
            torch.zeros(0, EDGE_ATTR_DIM, dtype=torch.float32, device=device))


def correlation_matrix(returns_window: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Pearson correlation between the columns of a return window.

    NaNs count as missing: each column is centred on the mean of its finite values and
    missing entries become 0 after centring (mean imputation), so one matmul gives all pairs.
    Shapes: returns_window [W, N], valid [N] bool -> (corr [N, N], usable [N] bool), where
    `usable` marks valid columns with non-zero variance; rows/cols of unusable columns are 0.
    """
    r = returns_window.to(torch.float32)
    finite = torch.isfinite(r)
    r = torch.where(finite, r, torch.zeros((), dtype=r.dtype, device=r.device))
    count = finite.sum(0).clamp_min(1)
    centred = torch.where(finite, r - r.sum(0) / count, torch.zeros((), dtype=r.dtype, device=r.device))
    norm = centred.square().sum(0).sqrt()                      # [N]
    usable = valid.to(torch.bool) & (norm > _STD_EPS)
    z = centred / torch.where(usable, norm, torch.ones_like(norm))
    z = z * usable                                             # unusable columns -> 0
    return z.T @ z, usable                                     # [N, N]


def build_graph(returns_window: Tensor, valid: Tensor, sectors: Tensor, cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """Undirected stock graph of one date from the trailing returns that end at that date.

    Each usable stock (valid, returns not constant) links to its `cfg.graph_top_k` most
    correlated usable peers. With `cfg.graph_sector_edges`, each stock with a known sector
    (>= 0) also links to at most `cfg.graph_max_sector_edges` stocks of the same sector, the
    most correlated first; sector peers without a measurable correlation come last, so stocks
    without return history at the anchor still get sector neighbours. The union is made
    symmetric, deduplicated and stripped of self loops. Runs on the device of the inputs.

    Shapes: returns_window [W, N] float, valid [N] bool, sectors [N] long ->
    edge_index [2, E] long over the N stocks, edge_attr [E, 2] float (correlation, same-sector).
    """
    n = returns_window.shape[1]
    if valid.shape != (n,) or sectors.shape != (n,):
        raise ValueError(f"build_graph: returns_window has {n} stocks but valid is {tuple(valid.shape)} "
                         f"and sectors is {tuple(sectors.shape)}")
    device = returns_window.device
    if n < 2:
        return empty_graph(device)
    corr, usable = correlation_matrix(returns_window, valid.to(device))
    eye = torch.eye(n, dtype=torch.bool, device=device)
    adj = _top_k_mask(corr, usable[:, None] & usable[None, :] & ~eye, cfg.graph_top_k)
    sectors = sectors.to(device)
    same_sector = (sectors[:, None] == sectors[None, :]) & (sectors >= 0)[:, None] & ~eye
    if cfg.graph_sector_edges and cfg.graph_max_sector_edges > 0:
        both = usable[:, None] & usable[None, :]
        score = torch.where(both, corr, torch.full_like(corr, _NO_CORR_SCORE))
        adj |= _top_k_mask(score, same_sector, cfg.graph_max_sector_edges)
    adj |= adj.T.clone()
    # adj is symmetric, so reading nonzero()'s (row, col) as (target, source) lists the same
    # edges sorted by target: PyG aggregates by target, and sorted targets scatter faster.
    dst, src = adj.nonzero(as_tuple=True)
    edge_attr = torch.stack([corr[src, dst], same_sector[src, dst].to(corr.dtype)], dim=1)
    return torch.stack([src, dst]), edge_attr


def _top_k_mask(score: Tensor, allowed: Tensor, k: int) -> Tensor:
    """Boolean [N, N]: per row, the (at most) k allowed columns with the highest score."""
    k = min(k, score.shape[1])
    if k <= 0:
        return torch.zeros_like(allowed)
    masked = torch.where(allowed, score, torch.full_like(score, float("-inf")))
    top = masked.topk(k, dim=1).indices                        # [N, k]
    chosen = torch.zeros_like(allowed)
    chosen.scatter_(1, top, True)
    return chosen & allowed                                    # rows with < k peers drop the -inf picks


class GraphCache:
    """Graphs of a panel's days, rebuilt every `cfg.graph_rebuild_interval` days.

    Day t uses the graph of its anchor a = t - (t % interval), built from the returns of days
    [a - graph_corr_window + 1, a] (clipped at day 0) and the validity at a: only the past and
    present, never anything after t. Graphs are kept per anchor, so a shuffled epoch builds each
    anchor once. `built` / `reused` count cache misses / hits since the last `reset_stats()`.

    Shapes: panel_returns [D, N] float, panel_valid [D, N] bool, sectors [N] long.
    """

    def __init__(self, panel_returns: Tensor, panel_valid: Tensor, sectors: Tensor,
                 cfg: ModelConfig, device: torch.device | str = "cpu") -> None:
        if panel_returns.shape != panel_valid.shape or panel_returns.dim() != 2:
            raise ValueError(f"GraphCache: returns {tuple(panel_returns.shape)} and valid "
                             f"{tuple(panel_valid.shape)} must both be [days, stocks]")
        if sectors.shape != (panel_returns.shape[1],):
            raise ValueError(f"GraphCache: sectors {tuple(sectors.shape)} must be [{panel_returns.shape[1]}]")
        self.device = torch.device(device)
        self.returns = panel_returns.to(self.device, torch.float32)
        self.valid = panel_valid.to(self.device, torch.bool)
        self.sectors = sectors.to(self.device, torch.long)
        self.cfg = cfg
        self._graphs: dict[int, tuple[Tensor, Tensor]] = {}
        self.built = 0
        self.reused = 0

    def anchor(self, t: int) -> int:
        """The day whose graph day t uses (t itself or an earlier day)."""
        return t - (t % self.cfg.graph_rebuild_interval)

    def for_day(self, t: int) -> tuple[Tensor, Tensor]:
        """(edge_index [2, E], edge_attr [E, 2]) over the panel's N stocks for day t."""
        t = int(t)
        if not 0 <= t < self.returns.shape[0]:
            raise IndexError(f"GraphCache.for_day: day {t} outside the panel's 0..{self.returns.shape[0] - 1}")
        a = self.anchor(t)
        graph = self._graphs.get(a)
        if graph is None:
            start = max(0, a - self.cfg.graph_corr_window + 1)
            graph = build_graph(self.returns[start:a + 1], self.valid[a], self.sectors, self.cfg)
            self._graphs[a] = graph
            self.built += 1
        else:
            self.reused += 1
        return graph

    def reset_stats(self) -> None:
        """Zero the built / reused counters (e.g. at the start of each epoch); keeps the graphs."""
        self.built = 0
        self.reused = 0

    def stats(self) -> dict[str, int]:
        """{'built': cache misses, 'reused': cache hits, 'cached': graphs held}."""
        return {"built": self.built, "reused": self.reused, "cached": len(self._graphs)}
