"""Per-horizon point and quantile heads, evaluated as grouped matmuls (no loop over horizons)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atft_core.nn.dropout import Dropout


class GroupedLinear(nn.Module):
    """G independent linear maps applied at once. Shapes: x [S, G, d_in] -> [S, G, d_out]."""

    def __init__(self, groups: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)   # nn.Linear's default initialisation range
        self.weight = nn.Parameter(torch.empty(groups, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, d_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.einsum("sgi,gio->sgo", x, self.weight) + self.bias


class HorizonHeads(nn.Module):
    """For each horizon a point MLP (-> 1) and a quantile MLP (-> Q), all of width `hidden`.

    Shapes: z [S, H_model] -> (point [S, n_horizons], quantiles [S, n_horizons, Q]).
    """

    def __init__(self, hidden: int, n_horizons: int, n_quantiles: int, dropout: float) -> None:
        super().__init__()
        self.n_horizons, self.n_quantiles = n_horizons, n_quantiles
        self.hidden = nn.Linear(hidden, 2 * n_horizons * hidden)   # point and quantile branches
        self.dropout = Dropout(dropout)
        self.point = GroupedLinear(n_horizons, hidden, 1)
        self.quantile = GroupedLinear(n_horizons, hidden, n_quantiles)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h = self.dropout(F.elu(self.hidden(z))).view(z.shape[0], 2, self.n_horizons, z.shape[1])
        return self.point(h[:, 0]).squeeze(-1), self.quantile(h[:, 1])
