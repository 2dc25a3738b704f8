"""atft_core.nn.dropout: the same distribution and scaling as nn.Dropout, in train mode only."""

from __future__ import annotations

import pytest
import torch

from atft_core.nn.dropout import Dropout
from atft_core.nn.encoder import LockedDropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keeps_one_minus_p_scaled_and_passes_gradients_through_the_mask(dtype):
    torch.manual_seed(0)
    x = torch.ones(200_000, dtype=dtype, requires_grad=True)
    y = Dropout(0.3).train()(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.7, abs=0.005)
    assert torch.allclose(y[kept].float(), torch.full_like(y[kept].float(), 1 / 0.7), rtol=1e-2)
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    assert y.dtype == dtype


def test_identity_in_eval_mode_and_at_p_zero():
    x = torch.randn(50, 8)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="p must be in"):
        Dropout(1.0)


def test_seeded_masks_repeat():
    x = torch.randn(1000)
    torch.manual_seed(3)
    a = Dropout(0.2).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.2).train()(x)
    assert torch.equal(a, b)


def test_locked_dropout_shares_one_mask_across_steps():
    torch.manual_seed(0)
    y = LockedDropout(0.5).train()(torch.ones(64, 10, 16))
    assert torch.equal(y, y[:, :1].expand_as(y))
    assert 0.3 < (y[:, 0] != 0).float().mean().item() < 0.7
