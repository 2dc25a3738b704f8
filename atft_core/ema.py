"""Exponential moving average of a model's weights (Polyak averaging), for evaluation.

Daily stock returns are mostly noise, so the weights after any one optimizer step carry that
step's noise; their running average ranks more steadily. With `train.ema_decay` > 0 the trainer
validates, checkpoints as best and predicts with the averaged weights, while the optimizer keeps
stepping the raw ones.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

WARMUP_STEPS = 10
"""After n updates the decay is min(setting, (1 + n) / (WARMUP_STEPS + n)), as in TensorFlow's
ExponentialMovingAverage with num_updates: early on the average follows the weights closely
instead of staying near the random initial ones for ~1 / (1 - decay) steps."""


class WeightAverage:
    """Running average of `model`'s floating-point state (parameters and buffers)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {name: value.detach().clone() for name, value in _float_state(model)}

    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average (call after each optimizer step)."""
        self.updates += 1
        decay = min(self.decay, self.updates / (WARMUP_STEPS - 1 + self.updates))
        names, current = zip(*_float_state(model))
        torch._foreach_lerp_([self.shadow[n] for n in names], [c.detach() for c in current], 1.0 - decay)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Within the block the model holds the averaged weights; the raw ones come back after."""
        raw = {name: value.detach().clone() for name, value in _float_state(model)}
        _copy_into(model, self.shadow)
        try:
            yield
        finally:
            _copy_into(model, raw)

    def averaged_state_dict(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """`model.state_dict()` with the averaged values in place of the raw ones."""
        state = model.state_dict()
        return {name: self.shadow.get(name, value).clone() for name, value in state.items()}

    def load(self, averaged: dict[str, torch.Tensor], updates: int) -> None:
        """Restore from `averaged_state_dict` output (a checkpoint) and its update count."""
        for name, value in self.shadow.items():
            value.copy_(averaged[name])
        self.updates = updates


def _float_state(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, v) for n, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()]


@torch.no_grad()
def _copy_into(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    for name, value in _float_state(model):
        value.copy_(values[name])
