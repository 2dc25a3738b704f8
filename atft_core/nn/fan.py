"""Frequency Adaptive Normalization (FAN; Ye et al., NeurIPS 2024), adapted to ranking, per step.

For each stock, feature and day u, the trailing window of the last L days (u-L+1..u) is
transformed with a real FFT; the K frequencies of largest amplitude are the non-stationary part
(trend, level, dominant cycles). The value of that part at day u is subtracted from the feature
at day u, so the encoder sees the residual of every day against its *own* trailing window.
Since a ranking model has no future window to de-normalise, a summary of what was removed at the
row's day (its value at day t, and its RMS over the window) is handed to the model beside the
encoder output instead.

Why per step rather than the paper's one window per sample: each day's residual depends on days
<= that day only, so a stock's residual sequence is the same whichever later row it serves, and
the encoder can run once per stock over several days (atft_core/nn/encoder.py). The paper's
version re-normalises the whole window for every row, which would tie each step's input to the
row's day and force one recurrence per stock-day.

DC choice: as in the reference implementation, the DC term (the window mean) competes with the
other frequencies for the top-K; a feature whose level dominates its variation loses its level
(which the summary then carries), one that oscillates around zero keeps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class FrequencyAdaptiveNorm(nn.Module):
    """Remove, at every step, the top-K amplitude frequencies of its trailing window.

    The real DFT of a short window is a matmul with a fixed [L, 2M] basis (M = L//2+1
    frequencies, cos columns then sin columns); results equal rfft / irfft (tested). Only the
    last step of each window's reconstruction is needed, and its RMS over the window follows
    from Parseval, so nothing of size [.., L, L] is built. No learnable parameters and no
    gradient (the input is data).
    Shapes: seq [U, T, F], window L -> (residual [U, T-L+1, F], summary [U, T-L+1, 2F]) for the
    steps L-1..T-1 (those with a full window); summary = (removed part at the step, its RMS
    over the window).
    """

    def __init__(self, top_k: int) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"FrequencyAdaptiveNorm: top_k must be >= 1 (use FAN off for 0), got {top_k}")
        self.top_k = top_k
        self._bases: dict[tuple[int, torch.dtype, torch.device], tuple[Tensor, Tensor, Tensor]] = {}

    def _basis(self, length: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """(forward [L, 2M], last-step inverse row [2M], Parseval weights [M]) for `length`."""
        key = (length, dtype, device)
        if key not in self._bases:
            t = torch.arange(length, dtype=torch.float64)
            m = torch.arange(length // 2 + 1, dtype=torch.float64)
            angle = 2 * math.pi * m[:, None] * t[None, :] / length             # [M, L]
            forward = torch.cat([torch.cos(angle), -torch.sin(angle)]).T      # [L, 2M]: Re, Im
            # irfft weights: DC and (even L) Nyquist once, the others twice (conjugate pairs).
            weight = torch.full((m.numel(),), 2.0, dtype=torch.float64)
            weight[0] = 1.0
            if length % 2 == 0:
                weight[-1] = 1.0
            last = angle[:, -1]
            inverse_last = torch.cat([torch.cos(last) * weight, -torch.sin(last) * weight]) / length
            self._bases[key] = tuple(b.to(device, dtype) for b in (forward, inverse_last, weight))
        return self._bases[key]

    @torch.no_grad()
    def forward(self, seq: Tensor, window: int) -> tuple[Tensor, Tensor]:
        if not 1 <= window <= seq.shape[1]:
            raise ValueError(f"FrequencyAdaptiveNorm: window {window} must be in 1..{seq.shape[1]} steps")
        forward, inverse_last, weight = self._basis(window, seq.dtype, seq.device)
        n_freq = weight.numel()
        windows = seq.unfold(1, window, 1)                                   # [U, T', F, L] view
        spectrum = torch.matmul(windows, forward)                            # [U, T', F, 2M]
        re, im = spectrum[..., :n_freq], spectrum[..., n_freq:]
        power = re.square() + im.square()                                    # [U, T', F, M]
        top = power.topk(min(self.top_k, n_freq), dim=-1).indices
        keep = torch.zeros_like(power).scatter_(-1, top, 1.0)
        removed = ((re * inverse_last[:n_freq] + im * inverse_last[n_freq:]) * keep).sum(-1)  # [U, T', F]
        # Parseval: sum_l removed_l^2 = sum_m weight_m |X_m|^2 / L over the kept frequencies.
        rms = ((power * keep * weight).sum(-1) / window ** 2).clamp(min=0).sqrt()
        residual = seq[:, window - 1:] - removed
        return residual, torch.cat([removed, rms], dim=-1)


@dataclass
class FanInputs:
    """FAN of a whole panel, computed once: the encoder's per-step inputs never change.

    Shapes: residual [D, N, F], summary [D, N, 2F] (the panel's layout); made with trailing
    windows of `window` days and the top `top_k` frequencies (0 before the panel's first day).
    """

    residual: Tensor
    summary: Tensor
    window: int
    top_k: int


# Floats of FAN scratch per chunk (the [.., 2M] spectra dominate): ~0.5 GB in fp32.
_CHUNK_FLOATS = 2 ** 27


def fan_bytes(n_days: int, n_stocks: int, n_features: int, bytes_per_value: int = 4) -> int:
    """Memory of `precompute_fan`'s result: residual (F) and summary (2F) per stock-day."""
    return n_days * n_stocks * 3 * n_features * bytes_per_value


def precompute_fan(features: Tensor, window: int, top_k: int) -> FanInputs:
    """FAN of every (day, stock) of a [D, N, F] panel, in chunks of days, on its device.

    The result equals what `FrequencyAdaptiveNorm(top_k)` gives for any batch's histories
    (tested), so the trainer computes it once instead of once per step and epoch.
    """
    n_days, n_stocks, n_features = features.shape
    fan = FrequencyAdaptiveNorm(top_k)
    per_day = n_stocks * n_features * 2 * (window + window // 2 + 1)
    chunk = max(1, _CHUNK_FLOATS // max(1, per_day))
    residual = torch.empty_like(features)
    summary = features.new_empty(n_days, n_stocks, 2 * n_features)
    for start in range(0, n_days, chunk):
        stop = min(n_days, start + chunk)
        span = torch.arange(start - window + 1, stop, device=features.device)
        seq = features[span.clamp(min=0)] * (span >= 0).to(features.dtype)[:, None, None]  # [C+L-1, N, F]
        res, summ = fan(seq.transpose(0, 1), window)                        # [N, C, F], [N, C, 2F]
        residual[start:stop] = res.transpose(0, 1)
        summary[start:stop] = summ.transpose(0, 1)
    return FanInputs(residual=residual, summary=summary, window=window, top_k=top_k)
