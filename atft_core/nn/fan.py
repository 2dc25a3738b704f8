"""Frequency Adaptive Normalization (FAN; Ye et al., NeurIPS 2024), adapted to ranking.

Per row and feature, the lookback window is transformed with a real FFT; the K frequencies of
largest amplitude are the non-stationary part (trend, level, dominant cycles). That part is
transformed back and subtracted, so the encoder sees the residual; since a ranking model has no
future window to de-normalise, a summary of what was removed (its value at the last step, and
its RMS over the window) is handed to the model beside the encoder output instead.

DC choice: as in the reference implementation, the DC term (the window mean) competes with the
other frequencies for the top-K; a feature whose level dominates its variation loses its level
(which the summary then carries), one that oscillates around zero keeps it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class FrequencyAdaptiveNorm(nn.Module):
    """Remove the top-K amplitude frequencies of each window; no learnable parameters.

    The real DFT of a short window is done as a matmul with a fixed [2M, L] basis (M = L//2+1
    frequencies, cos rows then sin rows), which on the CPU is several times faster than
    torch.fft for L ~ 20 and works on the [S, L, F] layout without a transpose; results equal
    rfft / irfft (tested). Shapes: x [S, L, F] -> (residual [S, L, F], summary [S, 2F]);
    summary = (removed part at the last step, RMS of the removed part over the window).
    """

    def __init__(self, top_k: int) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"FrequencyAdaptiveNorm: top_k must be >= 1 (use FAN off for 0), got {top_k}")
        self.top_k = top_k
        self._bases: dict[tuple[int, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}

    def _basis(self, length: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """(forward [2M, L], inverse [L, 2M]) real DFT bases for windows of `length` steps."""
        key = (length, dtype, device)
        if key not in self._bases:
            t = torch.arange(length, dtype=torch.float64)
            m = torch.arange(length // 2 + 1, dtype=torch.float64)
            angle = 2 * math.pi * m[:, None] * t[None, :] / length             # [M, L]
            forward = torch.cat([torch.cos(angle), -torch.sin(angle)])        # [2M, L]: Re, Im
            # irfft weights: DC and (even L) Nyquist once, the others twice (conjugate pairs).
            weight = torch.full((m.numel(),), 2.0, dtype=torch.float64)
            weight[0] = 1.0
            if length % 2 == 0:
                weight[-1] = 1.0
            inverse = torch.cat([torch.cos(angle) * weight[:, None],
                                 -torch.sin(angle) * weight[:, None]]).T / length  # [L, 2M]
            self._bases[key] = (forward.to(device, dtype), inverse.contiguous().to(device, dtype))
        return self._bases[key]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        forward, inverse = self._basis(x.shape[1], x.dtype, x.device)
        n_freq = forward.shape[0] // 2
        spectrum = torch.matmul(forward, x)                                   # [S, 2M, F]
        re, im = spectrum[:, :n_freq], spectrum[:, n_freq:]
        power = re.square() + im.square()                                     # [S, M, F]
        k = min(self.top_k, n_freq)
        top = power.topk(k, dim=1).indices                                    # [S, K, F]
        keep = torch.zeros_like(power).scatter_(1, top, 1.0)
        removed = torch.matmul(inverse, spectrum * keep.repeat(1, 2, 1))      # [S, L, F]
        summary = torch.cat([removed[:, -1], removed.square().mean(1).sqrt()], dim=-1)
        return x - removed, summary
