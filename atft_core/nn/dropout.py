"""Dropout with the mask drawn as ``uniform >= p`` instead of ``bernoulli_``.

The same thing as ``nn.Dropout`` (each element kept with probability 1 - p, kept ones scaled
by 1 / (1 - p)), drawn from a different random stream. On the CPU ``bernoulli_`` was the
largest single op of a GAT-phase training step (~12% of it, bench/bench_model.py's batch);
comparing a float32 uniform draw with p costs about half as much (docs/benchmarks.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def keep_mask(shape: tuple[int, ...] | torch.Size, p: float, like: Tensor) -> Tensor:
    """Mask of `shape` on like's device and dtype: 1 / (1 - p) with probability 1 - p, else 0."""
    keep = torch.rand(shape, device=like.device) >= p
    return keep.to(like.dtype) * (1.0 / (1.0 - p))


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout(p)`` (no parameters, so state dicts are unchanged)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * keep_mask(x.shape, self.p, x)

    def extra_repr(self) -> str:
        return f"p={self.p}"
