"""Exponential moving average of a model's weights (Polyak averaging), for evaluation.

Daily stock returns are mostly noise, so the weights after any one optimizer step carry that
step's noise; their running average ranks more steadily. With `train.ema_decay` > 0 the trainer
validates, checkpoints as best and predicts with the averaged weights, while the optimizer keeps
stepping the raw ones.
"""

from __future__ import annotations

import contextlib
import math
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
        decay = effective_decay(self.decay, self.updates)
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


def effective_decay(decay: float, updates: int) -> float:
    """The decay the average uses at its `updates`-th update: the setting, capped by the warm-up."""
    return min(decay, updates / (WARMUP_STEPS - 1 + updates))


def updates_to_reach(decay: float) -> int:
    """Updates after which the warm-up no longer caps `decay` (0.95: 171, 0.99: 891, 0.995: 1,791)."""
    return math.ceil((WARMUP_STEPS - 1) * decay / (1.0 - decay) - 1e-9)


def short_run_warning(decay: float, planned_updates: int) -> str | None:
    """A warning when a run is too short for train.ema_decay to take effect, else None: the
    setting would otherwise be quietly weaker than asked (a 400-step run averages at ~0.978
    whatever decay above that is set)."""
    if planned_updates >= updates_to_reach(decay):
        return None
    return (f"train.ema_decay={decay:g} is reached only after {updates_to_reach(decay):,} optimizer steps "
            f"(the warm-up in atft_core/ema.py); this run plans about {planned_updates:,}, so its average "
            f"ends at decay {effective_decay(decay, planned_updates):.3f}. More epochs or a smaller "
            f"train.days_per_step give it more steps")


def _float_state(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(n, v) for n, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()]


@torch.no_grad()
def _copy_into(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    for name, value in _float_state(model):
        value.copy_(values[name])
