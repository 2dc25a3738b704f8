"""ATFT temporal encoder (TFT-style): variable selection -> LSTM -> gated attention -> GRN.

Cheap where it loses nothing:
- the variable-selection weights are computed once per row (from the last step, i.e. day t)
  and applied to every step, instead of one GRN per step;
- only the last step is pooled, so the causal self-attention is evaluated for the last query
  only: it attends to steps 1..L, all <= t, which is exactly the last row of causally masked
  attention (the other L-1 query rows would be computed and thrown away), and it is
  re-associated so that keys and values are never computed per step (see LastStepAttention);
- dropout on [S, L, H] sequences uses one mask per row for all steps (LockedDropout).
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

    def __init__(self, d: int, dropout: float, dropout_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.dropout = dropout_layer if dropout_layer is not None else nn.Dropout(dropout)
        self.fc = nn.Linear(d, 2 * d)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.norm(skip + F.glu(self.fc(self.dropout(x)), dim=-1))


class LockedDropout(nn.Module):
    """Dropout with one mask per row shared by every time step (variational RNN dropout).

    Same expected regularisation as per-step dropout, L times fewer random numbers (on the
    CPU, drawing a per-element mask for an [S, L, H] tensor cost more than the layer it fed).
    Shapes: [S, L, H] -> [S, L, H].
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[0], 1, x.shape[2], dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class LastStepAttention(nn.Module):
    """Multi-head attention of the last step (query) over the whole window (keys, values).

    Exactly nn.MultiheadAttention for one query, re-associated so keys and values are never
    materialised for all L steps: q_h . (W_k,h s_l + b_k,h) = (W_k,h^T q_h) . s_l + const, and
    sum_l p_l (W_v,h s_l + b_v,h) = W_v,h (sum_l p_l s_l) + b_v,h since the p_l sum to 1. The
    per-step work drops from 2H^2 to H * heads multiply-adds. Causal by construction: every
    key is a step <= t. Shapes: seq [S, L, H] -> [S, H].
    """

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"LastStepAttention: heads={heads} must divide hidden={hidden}")
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden, bias=False)   # a key bias shifts all scores equally
        self.v = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, seq: Tensor) -> Tensor:
        s, _, hidden = seq.shape
        h, d = self.heads, hidden // self.heads
        q = self.q(seq[:, -1]).view(s, h, d)                                 # [S, h, d]
        q_in_seq = torch.einsum("shd,hdi->shi", q, self.k.weight.view(h, d, hidden))  # [S, h, H]
        scores = torch.bmm(q_in_seq, seq.transpose(1, 2)) / math.sqrt(d)   # [S, h, L]
        weights = self.dropout(torch.softmax(scores, dim=-1))
        mixed = torch.bmm(weights, seq)                                     # [S, h, H]
        context = torch.einsum("shi,hdi->shd", mixed, self.v.weight.view(h, d, hidden))
        context = context.reshape(s, hidden) + self.v.bias                  # [S, H]
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
        self.embed_dropout = LockedDropout(p)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=cfg.encoder_layers, batch_first=True,
                            dropout=p if cfg.encoder_layers > 1 else 0.0)
        self.post_lstm = GateAddNorm(hidden, p, LockedDropout(p))
        self.attention = LastStepAttention(hidden, cfg.encoder_heads, p)
        self.post_attention = GateAddNorm(hidden, p)
        self.feed_forward = GatedResidualNetwork(hidden, hidden, hidden, p)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(self.selection(x[:, -1]), dim=-1)          # [S, F], once per row
        # Scaled by F so that uniform weights leave the features as they are (softmax weights
        # average 1/F and would otherwise shrink the LSTM's input F-fold at initialisation).
        scale = weights * x.shape[-1]
        embedded = self.embed_dropout(self.embed(x * scale[:, None, :]))   # [S, L, H]
        lstm_out, _ = self.lstm(embedded)                                   # [S, L, H]
        seq = self.post_lstm(lstm_out, embedded)                            # [S, L, H]
        last = self.post_attention(self.attention(seq), seq[:, -1])         # [S, H]
        return self.feed_forward(last), weights
