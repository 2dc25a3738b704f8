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

import torch
from torch import Tensor, nn


class FrequencyAdaptiveNorm(nn.Module):
    """Remove the top-K amplitude frequencies of each window; no learnable parameters.

    Shapes: x [S, L, F] -> (residual [S, L, F], summary [S, 2F]); summary = (removed part at
    the last step, RMS of the removed part over the window), per feature.
    """

    def __init__(self, top_k: int) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"FrequencyAdaptiveNorm: top_k must be >= 1 (use FAN off for 0), got {top_k}")
        self.top_k = top_k

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        length = x.shape[1]
        xt = x.transpose(1, 2)                                    # [S, F, L]: FFT over a contiguous axis
        spectrum = torch.fft.rfft(xt.contiguous(), dim=-1)        # [S, F, L//2+1] complex
        k = min(self.top_k, spectrum.shape[-1])
        top = spectrum.abs().topk(k, dim=-1).indices              # [S, F, K]
        keep = torch.zeros(spectrum.shape, dtype=torch.bool, device=x.device).scatter_(-1, top, True)
        removed = torch.fft.irfft(spectrum * keep, n=length, dim=-1)  # [S, F, L]
        summary = torch.cat([removed[..., -1], removed.square().mean(-1).sqrt()], dim=-1)
        return x - removed.transpose(1, 2), summary
