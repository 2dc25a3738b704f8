"""Health alarms during training: signs that a run has stopped learning something useful, raised
at the end of each epoch as status.json warnings (the Run page shows them).

    monitor = HealthMonitor(cfg)                     # thresholds: train.alarm_* fields
    monitor.check(epoch, phase, values) -> [Alarm]   # values: the epoch's logged metrics

- the GAT's gradient norm collapsing towards zero (the graph block stops learning),
- the residual gate alpha saturating at 0 or 1 (the fusion ignores the graph or the encoder),
- the validation prediction std collapsing against its first epoch (predictions flattening),
- the training loss diverging from its lowest value so far.

Each message names the metric, the epoch and the threshold field. The references of the last
two (first prediction std, lowest loss) are saved in checkpoints, so a resumed run keeps them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from atft_core.config import RunConfig
from atft_core.model import GAT_PHASE


@dataclass(frozen=True)
class Alarm:
    """One health warning: `topic` starts `message` (a later alarm on it replaces this one)."""

    topic: str
    message: str


@dataclass
class HealthReferences:
    """What later epochs are compared with."""

    first_pred_std: float | None = None
    first_pred_std_epoch: int | None = None
    lowest_loss: float | None = None
    lowest_loss_epoch: int | None = None


class HealthMonitor:
    """The alarms of one run; see the module doc."""

    def __init__(self, cfg: RunConfig, references: dict[str, Any] | None = None):
        self.train = cfg.train
        self.uses_gat = cfg.model.kind == "atft_gat_fan" and cfg.model.use_gat
        self.gate_learns = cfg.model.gate_learnable
        self.refs = HealthReferences(**(references or {}))

    def state_dict(self) -> dict[str, Any]:
        return asdict(self.refs)

    def check(self, epoch: int, phase: int, values: dict[str, Any]) -> list[Alarm]:
        """The alarms raised by one finished epoch's metrics (and the references updated)."""
        alarms = [self._gat_gradient(epoch, phase, values.get("gat/grad_norm")),
                  self._gate(epoch, phase, values.get("gat/alpha")),
                  self._pred_std(epoch, values.get("val/pred_std")),
                  self._loss(epoch, values.get("train/loss"))]
        return [a for a in alarms if a is not None]

    def _gat_gradient(self, epoch: int, phase: int, norm: float | None) -> Alarm | None:
        limit = self.train.alarm_gat_grad_norm
        if not (limit and self.uses_gat and phase >= GAT_PHASE and norm is not None) or norm >= limit:
            return None
        return Alarm("GAT gradient collapsing", f"GAT gradient collapsing: gat/grad_norm={norm:.3g} at epoch {epoch} "
                     f"< train.alarm_gat_grad_norm={limit:g}: the graph attention has almost stopped learning")

    def _gate(self, epoch: int, phase: int, alpha: float | None) -> Alarm | None:
        margin = self.train.alarm_alpha_margin
        if not (margin and self.uses_gat and self.gate_learns and phase >= GAT_PHASE and alpha is not None):
            return None
        if margin < alpha < 1 - margin:
            return None
        end, meaning = (0, "ignores the graph") if alpha <= margin else (1, "ignores the encoder")
        return Alarm("gate alpha saturated", f"gate alpha saturated: gat/alpha={alpha:.4f} at epoch {epoch} is within "
                     f"train.alarm_alpha_margin={margin:g} of {end}: the fusion {meaning}")

    def _pred_std(self, epoch: int, std: float | None) -> Alarm | None:
        if std is None:
            return None
        refs, ratio = self.refs, self.train.alarm_pred_std_ratio
        if refs.first_pred_std is None:
            refs.first_pred_std, refs.first_pred_std_epoch = std, epoch
            return None
        if not ratio or std >= ratio * refs.first_pred_std:
            return None
        return Alarm("validation predictions collapsing",
                     f"validation predictions collapsing: val/pred_std={std:.3g} at epoch {epoch} < "
                     f"train.alarm_pred_std_ratio={ratio:g} x {refs.first_pred_std:.3g} (epoch {refs.first_pred_std_epoch})")

    def _loss(self, epoch: int, loss: float | None) -> Alarm | None:
        if loss is None:
            return None
        refs, rise = self.refs, self.train.alarm_loss_rise
        if refs.lowest_loss is None or loss < refs.lowest_loss:
            refs.lowest_loss, refs.lowest_loss_epoch = loss, epoch
            return None
        if not rise or loss - refs.lowest_loss <= rise * abs(refs.lowest_loss):
            return None
        return Alarm("loss diverging", f"loss diverging: train/loss={loss:.4g} at epoch {epoch} is above its lowest "
                     f"{refs.lowest_loss:.4g} (epoch {refs.lowest_loss_epoch}) by more than "
                     f"train.alarm_loss_rise={rise:g} x {abs(refs.lowest_loss):.4g}")
