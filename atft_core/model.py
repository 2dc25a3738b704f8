"""ATFT-GAT-FAN: FAN -> ATFT temporal encoder -> GATv2 with a residual gate -> horizon heads.

Data flow for the S stock-days of a `DayBatch`, whose inputs are U stock histories (shapes in
comments; L the lookback, T the history length):

    seq [U, T, F] --FAN per step--> residual [U, T-L+1, F] --encoder, read at each row's day--> pooled [S, H]
                             `--> summary at the row's day [S, 2F] --linear--> [S, H] --/   (GRN -> backbone [S, H])
    backbone --GATv2 x gat_layers over the day graphs--> graph [S, H]
    fused = (1 - alpha) * backbone + alpha * graph --heads--> point [S, Hz], quantiles [S, Hz, Q]

The first L - 1 steps of `seq` are context for FAN's trailing windows; without FAN they are
skipped, so the encoder sees the same steps either way.

Phases (`set_phase`): 0 no FAN, no GAT; 1 adds FAN; 2 and 3 add the GAT. `model.fan_top_k = 0`
or `model.use_gat = False` keep the respective block off in every phase. Rows only interact
through the GAT, whose edges never cross days, so a row's prediction depends on its own stock's
days <= t and its graph neighbours' only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import torch
from torch import Tensor, nn

from atft_core.config import PHASE_NAMES, ModelConfig
from atft_core.nn.encoder import GatedResidualNetwork, TemporalEncoder
from atft_core.nn.fan import FrequencyAdaptiveNorm
from atft_core.nn.gat import GraphBlock, ResidualGate
from atft_core.nn.heads import HorizonHeads

if TYPE_CHECKING:  # pragma: no cover
    from atft_core.batching import DayBatch

FAN_PHASE = 1
"""First phase in which FAN is on."""
GAT_PHASE = 2
"""First phase in which the GAT is on."""


@dataclass
class ModelOutput:
    """Predictions for the S rows of a batch.

    Shapes: point [S, n_horizons], quantiles [S, n_horizons, Q], alpha [] (the residual gate,
    reported even when the GAT is off), feature_weights [S, F] (variable-selection weights).
    """

    point: Tensor
    quantiles: Tensor
    alpha: Tensor
    feature_weights: Tensor


class ATFTGATFAN(nn.Module):
    """The deep stock-ranking model; every width and switch comes from `cfg`.

    Shapes: forward(batch) with batch.seq [U, T, F] (rows at batch.seq_row, batch.seq_end),
    batch.edge_index [2, E], batch.edge_attr [E, 2] -> ModelOutput (point [S, n_horizons],
    quantiles [S, n_horizons, Q], alpha []).
    """

    def __init__(self, cfg: ModelConfig, n_features: int, n_horizons: int) -> None:
        super().__init__()
        if cfg.kind != "atft_gat_fan":
            raise ValueError(f"ATFTGATFAN: model.kind is {cfg.kind!r}; baselines are built in atft_core.baselines")
        if n_features < 1 or n_horizons < 1:
            raise ValueError(f"ATFTGATFAN: need n_features >= 1 and n_horizons >= 1, got {n_features}, {n_horizons}")
        hidden, p = cfg.hidden_size, cfg.encoder_dropout
        self.cfg = cfg
        self.n_features = n_features
        self.fan = FrequencyAdaptiveNorm(cfg.fan_top_k) if cfg.fan_top_k > 0 else None
        # Built even with fan_top_k = 0 so that checkpoints of every FAN setting share one layout.
        self.fan_summary = nn.Linear(2 * n_features, hidden)
        self.encoder = TemporalEncoder(cfg, n_features)
        self.combine = GatedResidualNetwork(2 * hidden, hidden, hidden, p)
        self.graph = GraphBlock(cfg) if cfg.use_gat else None
        self.gate = ResidualGate(cfg.gate_init, cfg.gate_learnable)
        self.heads = HorizonHeads(hidden, n_horizons, len(cfg.quantiles), p)
        self.phase = len(PHASE_NAMES) - 1

    def set_phase(self, phase: int) -> None:
        """0: no FAN, no GAT; 1: + FAN; 2, 3: + GAT (each only if enabled in the config)."""
        if not 0 <= phase < len(PHASE_NAMES):
            raise ValueError(f"ATFTGATFAN.set_phase: phase must be 0..{len(PHASE_NAMES) - 1}, got {phase}")
        self.phase = phase

    @property
    def fan_active(self) -> bool:
        return self.fan is not None and self.phase >= FAN_PHASE

    @property
    def gat_active(self) -> bool:
        return self.graph is not None and self.phase >= GAT_PHASE

    def forward(self, batch: "DayBatch") -> ModelOutput:
        seq, window = batch.seq, batch.lookback
        if seq.dim() != 3 or seq.shape[-1] != self.n_features:
            raise ValueError(f"ATFTGATFAN: expected x/seq [stocks, steps, {self.n_features}], got {tuple(seq.shape)}")
        # A built batch guarantees the history (history_checked); reading seq_end would wait for the device.
        if seq.shape[1] < 2 * window - 1 or (not batch.history_checked and batch.n_rows
                                             and int(batch.seq_end.min()) < 2 * window - 2):
            raise ValueError(f"ATFTGATFAN: every row needs {2 * window - 2} steps of history before its day "
                             f"(window {window} plus FAN context); see DayBatch")
        ends = batch.seq_end - (window - 1)                                 # steps of the encoder input
        if self.fan_active:
            inputs, summary = self._fan(batch, ends)                        # [U, T', F], [S, 2F]
            fan_vec = self.fan_summary(summary)                             # [S, H]
        else:
            inputs = seq[:, window - 1:]
            fan_vec = seq.new_zeros(batch.n_rows, self.cfg.hidden_size)
        pooled, weights = self.encoder(inputs, batch.seq_row, ends, window)  # [S, H], [S, F]
        backbone = self.combine(torch.cat([pooled, fan_vec], dim=-1))       # [S, H]
        fused = backbone
        if self.gat_active:
            graph = self.graph(backbone, batch.edge_index, batch.edge_attr.to(backbone.dtype))
            fused = self.gate.blend(backbone, graph)
        point, quantiles = self.heads(fused)
        return ModelOutput(point=point, quantiles=quantiles, alpha=self.gate.alpha().detach(),
                           feature_weights=weights)

    def _fan(self, batch: "DayBatch", ends: Tensor) -> tuple[Tensor, Tensor]:
        """FAN residual histories and the rows' summaries: precomputed ones when the batch
        carries them (the trainer's case), else computed here from `seq`."""
        assert self.fan is not None
        if batch.fan_seq is None:
            inputs, summary = self.fan(batch.seq, batch.lookback)
            return inputs, summary[batch.seq_row, ends]
        if batch.fan_key != (batch.lookback, self.fan.top_k):
            raise ValueError(f"ATFTGATFAN: the batch's FAN (window, top_k) = {batch.fan_key} does not match "
                             f"lookback {batch.lookback} and model.fan_top_k {self.fan.top_k}")
        return batch.fan_seq, batch.fan_summary

    def gat_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the GAT layers and the residual gate (for grad-norm logging)."""
        if self.graph is not None:
            yield from self.graph.parameters()
        yield from self.gate.parameters()

    def count_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
