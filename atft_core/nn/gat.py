"""Graph attention over the day's stock graph, blended into the backbone by a residual gate."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATv2Conv
from torch_geometric.utils import add_self_loops

from atft_core.config import ModelConfig
from atft_core.graph import EDGE_ATTR_DIM
from atft_core.nn.dropout import Dropout

EDGE_GEMM_WIDTH = 16
"""Edge attributes are zero-padded to this many columns for the edge projection's GEMM (below)."""


class PaddedEdgeProjection(nn.Module):
    """GATv2's edge projection ``W_e a`` (no bias) with ``a`` and ``W_e`` zero-padded to
    EDGE_GEMM_WIDTH columns: exactly the same values and gradients.

    Why: the edge attributes have 2 columns, and MKL's fp32 GEMM with an inner dimension of 2
    is slow, the weight gradient (``grad.T @ a``, [H, E] x [E, 2]) above all: forward+backward
    over ~240k edges took ~150 ms per layer here against ~40 ms at 16 columns (docs/benchmarks.md).
    It runs over every edge of every GAT layer each step. Holds the original parameter, so the
    state dict keeps the key and shape ``lin_edge.weight`` [H, 2].
    """

    def __init__(self, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight

    def forward(self, edge_attr: Tensor) -> Tensor:
        pad = max(0, EDGE_GEMM_WIDTH - edge_attr.shape[1])
        return F.linear(F.pad(edge_attr, (0, pad)), F.pad(self.weight, (0, pad)))


def _gatv2_layer(hidden: int, heads: int, dropout: float) -> GATv2Conv:
    """PyG's GATv2Conv (heads concatenated back to `hidden`) with the padded edge projection.
    Self loops are added by GraphBlock, once for all layers (see there)."""
    conv = GATv2Conv(hidden, hidden // heads, heads=heads, concat=True, edge_dim=EDGE_ATTR_DIM,
                     dropout=dropout, add_self_loops=False)
    conv.lin_edge = PaddedEdgeProjection(conv.lin_edge.weight)
    return conv


class GraphBlock(nn.Module):
    """Stacked GATv2Conv layers (heads concatenated back to hidden) with ELU and residuals.

    h <- h + dropout(ELU(GATv2(h))) per layer; self loops are added so isolated stocks keep
    their own vector. Shapes: h [S, H], edge_index [2, E] over rows 0..S, edge_attr [E, 2] ->
    [S, H]. Index S is the sink of DayBatch: a zero row appended here, which the edges of
    stocks absent that day join at both ends, so they reach no real row.

    Self loops as GATv2Conv(add_self_loops=True) adds them (attribute: the mean of the row's
    incoming edges' attributes), but once for all layers and without its removal of existing
    self loops, which selects edges by a mask and so waits for the device; the day graphs have
    none (atft_core.graph).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden, heads = cfg.hidden_size, cfg.gat_heads
        if hidden % heads:
            raise ValueError(f"GraphBlock: model.gat_heads={heads} must divide model.hidden_size={hidden}")
        self.layers = nn.ModuleList(_gatv2_layer(hidden, heads, cfg.gat_dropout) for _ in range(cfg.gat_layers))
        self.dropout = Dropout(cfg.gat_dropout)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        n_rows = h.shape[0]
        h = torch.cat([h, h.new_zeros(1, h.shape[1])])                         # + the sink
        edge_index, edge_attr = add_self_loops(edge_index, edge_attr, fill_value="mean", num_nodes=n_rows + 1)
        for conv in self.layers:
            h = h + self.dropout(F.elu(conv(h, edge_index, edge_attr)))
        return h[:n_rows]


class ResidualGate(nn.Module):
    """alpha = sigmoid(g), g starting at logit(gate_init); learnable or a fixed buffer.

    `blend(backbone, graph) = (1 - alpha) * backbone + alpha * graph`, so the GAT always has a
    direct gradient path to the heads.
    """

    def __init__(self, gate_init: float, learnable: bool) -> None:
        super().__init__()
        if not 0.0 < gate_init < 1.0:
            raise ValueError(f"ResidualGate: model.gate_init must be in (0, 1), got {gate_init}")
        logit = torch.tensor(math.log(gate_init / (1.0 - gate_init)), dtype=torch.float32)
        if learnable:
            self.logit = nn.Parameter(logit)
        else:
            self.register_buffer("logit", logit)

    def alpha(self) -> Tensor:
        """The gate value, a 0-dim tensor in (0, 1)."""
        return torch.sigmoid(self.logit)

    def blend(self, backbone: Tensor, graph: Tensor) -> Tensor:
        alpha = self.alpha()
        return (1.0 - alpha) * backbone + alpha * graph
