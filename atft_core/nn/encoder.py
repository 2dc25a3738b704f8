"""ATFT temporal encoder (TFT-style): variable selection -> LSTM -> gated attention -> GRN.

Cheap where it loses nothing:
- the variable-selection weights are computed once per row (from the last step, i.e. day t)
  and applied to every step, instead of one GRN per step;
- only the last step is pooled, so the causal self-attention is evaluated for the last query
  only: it attends to steps 1..L, all <= t, which is exactly the last row of causally masked
  attention (the other L-1 query rows would be computed and thrown away).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atft_core.config import ModelConfig


class GatedResidualNetwork(nn.Module):
    """TFT's GRN: LayerNorm(skip(a) + GLU(W2 ELU(W1 a))).

    TFT applies a linear layer and then the GLU's own linear layer; two linear maps in a row
    are one, so W2 maps straight to the GLU's 2*d_out inputs.
    Shapes: a [..., d_in] -> [..., d_out].
    """

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, 2 * d_out)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, a: Tensor) -> Tensor:
        h = self.dropout(F.elu(self.fc1(a)))
        return self.norm(self.skip(a) + F.glu(self.fc2(h), dim=-1))


class GateAddNorm(nn.Module):
    """Gated skip connection: LayerNorm(skip + GLU(W dropout(x))). Shapes: [..., d] -> [..., d]."""

    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(d, 2 * d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.norm(skip + F.glu(self.fc(self.dropout(x)), dim=-1))


class LastStepAttention(nn.Module):
    """Multi-head attention of the last step over the whole window (causal by construction).

    Shapes: seq [S, L, H] -> [S, H].
    """

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"LastStepAttention: heads={heads} must divide hidden={hidden}")
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, seq: Tensor) -> Tensor:
        s, length, hidden = seq.shape
        d = hidden // self.heads
        q = self.q(seq[:, -1]).view(s, self.heads, 1, d)                     # [S, h, 1, d]
        k, v = self.kv(seq).view(s, length, 2, self.heads, d).permute(2, 0, 3, 1, 4)  # [S, h, L, d]
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)   # [S, h, 1, L]
        context = (self.dropout(weights) @ v).reshape(s, hidden)            # [S, H]
        return self.out(context)


class TemporalEncoder(nn.Module):
    """Lookback window -> one vector per row (TFT-style), every width from the config.

    Shapes: x [S, L, F] -> (pooled [S, H], feature_weights [S, F]).
    """

    def __init__(self, cfg: ModelConfig, n_features: int) -> None:
        super().__init__()
        hidden, p = cfg.hidden_size, cfg.encoder_dropout
        self.selection = GatedResidualNetwork(n_features, hidden, n_features, p)
        self.embed = nn.Linear(n_features, hidden)
        self.embed_dropout = nn.Dropout(p)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=cfg.encoder_layers, batch_first=True,
                            dropout=p if cfg.encoder_layers > 1 else 0.0)
        self.post_lstm = GateAddNorm(hidden, p)
        self.attention = LastStepAttention(hidden, cfg.encoder_heads, p)
        self.post_attention = GateAddNorm(hidden, p)
        self.feed_forward = GatedResidualNetwork(hidden, hidden, hidden, p)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(self.selection(x[:, -1]), dim=-1)          # [S, F], once per row
        embedded = self.embed_dropout(self.embed(x * weights[:, None, :]))  # [S, L, H]
        lstm_out, _ = self.lstm(embedded)                                   # [S, L, H]
        seq = self.post_lstm(lstm_out, embedded)                            # [S, L, H]
        last = self.post_attention(self.attention(seq), seq[:, -1])         # [S, H]
        return self.feed_forward(last), weights
