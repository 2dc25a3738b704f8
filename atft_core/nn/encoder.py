"""ATFT temporal encoder (TFT-style): variable selection -> LSTM -> gated attention -> GRN.

It runs once per *stock* over the batch's history `seq` [U, T, F] and then reads each row
(stock, day t) at its own step: every layer before the attention is causal step by step, so a
row's output depends on days <= t only. For B consecutive days this costs T = L + B - 1 steps
per stock instead of B windows of L steps (DESIGN.md: "encode each stock's history once
causally and slice per day"). The LSTM of the row of day t has therefore seen between L and
L + B - 1 days (all <= t); the attention looks at exactly the last L.

Cheap where it loses nothing:
- only the row's own step is pooled, so the causal self-attention is evaluated for that query
  only, over its L-step window, and re-associated so that keys and values are never computed
  per step (see LastStepAttention);
- dropout on [U, T, H] sequences uses one mask per stock for all steps (LockedDropout).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atft_core.config import ModelConfig
from atft_core.nn.dropout import Dropout, keep_mask


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
        self.dropout = Dropout(dropout)
        self.norm = nn.LayerNorm(d_out)

    def forward(self, a: Tensor) -> Tensor:
        h = self.dropout(F.elu(self.fc1(a)))
        return self.norm(self.skip(a) + F.glu(self.fc2(h), dim=-1))


class GateAddNorm(nn.Module):
    """Gated skip connection: LayerNorm(skip + GLU(W dropout(x))). Shapes: [..., d] -> [..., d]."""

    def __init__(self, d: int, dropout: float, dropout_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.dropout = dropout_layer if dropout_layer is not None else Dropout(dropout)
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
        return x * keep_mask((x.shape[0], 1, x.shape[2]), self.p, x)


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
        self.dropout = Dropout(dropout)

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
    """Stock histories -> one vector per row (TFT-style), every width from the config.

    Shapes: seq [U, T, F], rows [S] (which history), ends [S] (the row's step in it, >= L-1),
    window L -> (pooled [S, H], feature_weights [S, F]).
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

    def forward(self, seq: Tensor, rows: Tensor, ends: Tensor, window: int) -> tuple[Tensor, Tensor]:
        weights = torch.softmax(self.selection(seq), dim=-1)                # [U, T, F], per step
        # Scaled by F so that uniform weights leave the features as they are (softmax weights
        # average 1/F and would otherwise shrink the LSTM's input F-fold at initialisation).
        embedded = self.embed_dropout(self.embed(seq * weights * seq.shape[-1]))  # [U, T, H]
        lstm_out, _ = self.lstm(embedded)                                   # [U, T, H]
        states = self.post_lstm(lstm_out, embedded)                         # [U, T, H]
        steps = ends[:, None] + torch.arange(-window + 1, 1, device=ends.device)
        windows = states[rows[:, None], steps]                              # [S, L, H]
        last = self.post_attention(self.attention(windows), windows[:, -1])  # [S, H]
        return self.feed_forward(last), weights[rows, ends]
