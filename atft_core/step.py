"""One optimiser step of the deep model, and an epoch's running statistics kept on the device.

The step reads nothing back from the device (atft_core.syncs counts it; tests/test_syncs.py
holds it to zero): the loss terms, the GAT's gradient norm, the gate, the rows and whether a
loss was not finite are summed on the device and read once per log interval (`read_step`,
every ``train.log_every_steps`` steps) and once per epoch (`read_epoch`). On a GPU the host
can then queue the next step while the device still runs this one.

A non-finite loss therefore fails the run at the next log point or at the end of the epoch,
at most ``train.log_every_steps`` steps after it happened; the error names the first step whose
loss was not finite and that step's terms. Checkpoints are only written after the epoch's
check, so weights those steps touched are never kept.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import Tensor

from atft_core import compiled
from atft_core.config import RunConfig
from atft_core.ema import WeightAverage
from atft_core.loss import TERM_NAMES, LossShare, loss_terms

N_TERMS = len(TERM_NAMES) + 1
"""The loss terms and the total (loss_terms' order)."""


class TrainingFailed(RuntimeError):
    """The run cannot go on (non-finite loss, degenerate predictions when told to stop)."""


class EpochStats:
    """Running sums of one epoch on the device; read back with `read_step` / `read_epoch`.

    `reduce` (data-parallel training) adds a tensor up over all processes in place; each
    process then holds the whole step's terms and rows (atft_core.distributed).
    """

    def __init__(self, device: torch.device, epoch: int, first_step: int,
                 reduce: Callable[[Tensor], None] | None = None) -> None:
        self.epoch, self.first_step, self.reduce = epoch, first_step, reduce
        zeros = lambda *shape, dtype=torch.float64: torch.zeros(*shape, dtype=dtype, device=device)  # noqa: E731
        self.sums = zeros(N_TERMS + 1)                      # terms, total, rows
        self.last = zeros(N_TERMS)                          # the latest step's terms
        self.gat_norm = zeros(())
        self.alpha = zeros(())
        self.count = zeros((), dtype=torch.int64)           # steps, counted where the step runs
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_terms = zeros(N_TERMS)
        self.steps = 0

    def add(self, terms: Tensor, gat_norm: Tensor | None, alpha: Tensor, rows: int) -> None:
        """Account one step (device ops only)."""
        terms = terms.to(torch.float64)
        self.count += 1
        first_bad = ~torch.isfinite(terms[-1]) & (self.bad_step < 0)
        self.bad_step = torch.where(first_bad, self.count, self.bad_step)
        self.bad_terms = torch.where(first_bad, terms, self.bad_terms)
        self.sums[:N_TERMS] += terms
        self.sums[N_TERMS] += rows
        self.last = terms
        if gat_norm is not None:
            self.gat_norm += gat_norm.to(torch.float64)
        self.alpha = alpha.detach().to(torch.float64)
        self.steps += 1

    def read_step(self) -> float:
        """The latest step's total loss (one read); raises TrainingFailed after a non-finite loss."""
        values = self._read(torch.cat([self.last[-1:], self._bad()]), self._first_bad())
        self._check(values[1:])
        return values[0]

    def read_epoch(self) -> dict[str, float]:
        """Mean terms, rows, GAT gradient norm and gate of the epoch (one read); raises
        TrainingFailed after a non-finite loss."""
        values = self._read(torch.cat([self.sums, self._bad()]),
                            torch.cat([self._first_bad(), self.gat_norm[None], self.alpha[None]]))
        self._check(values[N_TERMS + 1:])
        n = max(1, self.steps)
        means = [v / n for v in values[:N_TERMS]]
        gat_norm, alpha = values[-2:]
        return {"train/loss": means[-1], **{f"loss/{name}": v for name, v in zip(TERM_NAMES, means)},
                "rows": values[N_TERMS], "gat/grad_norm": gat_norm / n, "gat/alpha": alpha}

    def _bad(self) -> Tensor:
        """[1 if a non-finite loss was seen] (summed over processes: any of them)."""
        return (self.bad_step >= 0).to(torch.float64)[None]

    def _first_bad(self) -> Tensor:
        """[this process's first bad step (-1: none), that step's terms]."""
        return torch.cat([self.bad_step.to(torch.float64)[None], self.bad_terms])

    def _read(self, summed: Tensor, local: Tensor) -> list[float]:
        """The one read: `summed` (a fresh tensor) added up over processes, then `local`
        (the same in every process, or this process's own) as it is."""
        if self.reduce is not None:
            self.reduce(summed)
        return torch.cat([summed, local]).tolist()

    def _check(self, bad: list[float]) -> None:
        """`bad` = [processes that saw a non-finite loss, this one's first bad step, its terms]."""
        if bad[0] <= 0:
            return
        if bad[1] < 0:
            raise TrainingFailed(f"non-finite loss at epoch {self.epoch} by step {self.first_step + self.steps} "
                                 "(in another process's days of a step)")
        terms = ", ".join(f"{name}={value}" for name, value in zip(TERM_NAMES + ("total",), bad[2:]))
        raise TrainingFailed(f"non-finite loss at epoch {self.epoch} step {self.first_step + int(bad[1])}: {terms}")


class TrainStep:
    """Forward, loss, backward, clipping, optimiser and weight-average update of one step.

    `forward` is the model as the step calls it (the model itself, or its data-parallel form);
    `model` is the module whose parameters are clipped, reported and averaged. `loss_scale`
    multiplies the loss before backward (data-parallel training averages gradients over
    processes, so each process scales its share back up; 1 otherwise). With runtime.compile
    the model ('model') or forward and loss together ('step') go through torch.compile
    (atft_core.compiled; the batches are then padded to size buckets).
    """

    def __init__(self, cfg: RunConfig, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 average: WeightAverage | None, neutralize_index: tuple[int, ...],
                 autocast: Callable[[], contextlib.AbstractContextManager],
                 forward: Callable[[Any], Any] | None = None, loss_scale: float = 1.0) -> None:
        self.cfg, self.model, self.optimizer, self.average = cfg, model, optimizer, average
        self.neutralize_index, self.autocast = neutralize_index, autocast
        self.forward = forward if forward is not None else model
        self.loss_scale = loss_scale
        self.forward_loss = self._forward_loss
        if compiled.enable(cfg):
            if cfg.runtime.compile == "model":
                self.forward = compiled.compiled(self.forward)
            else:
                self.forward_loss = compiled.compiled(self._forward_loss)

    def __call__(self, batch: Any, phase: int, lr: float, stats: EpochStats, share: LossShare | None = None) -> None:
        cfg, model = self.cfg, self.model
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total, terms, alpha = self.forward_loss(batch, cfg.train.phase_rank_loss_scale[phase], share)
        self.optimizer.zero_grad(set_to_none=True)
        (total * self.loss_scale if self.loss_scale != 1.0 else total).backward()
        gat_norm = grad_norm(model.gat_parameters())
        if cfg.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        self.optimizer.step()
        if self.average is not None:
            self.average.update(model)
        real_rows = len(batch.host_rows[0]) if batch.host_rows is not None else batch.n_rows
        stats.add(terms, gat_norm, alpha, real_rows)

    def _forward_loss(self, batch: Any, rank_scale: float, share: LossShare | None) -> tuple[Tensor, Tensor, Tensor]:
        """(total loss, terms, gate alpha) of the batch."""
        cfg = self.cfg
        with self.autocast():
            out = self.forward(batch)
        total, terms = loss_terms(out, batch, cfg.loss, cfg.model.quantiles, rank_scale=rank_scale,
                                  horizon_weights=cfg.loss.horizon_weights,
                                  neutralize_index=self.neutralize_index, share=share)
        return total, terms, out.alpha


def grad_norm(parameters: Any) -> Tensor | None:
    """L2 norm of the gradients of `parameters` on their device (None when none has one)."""
    grads = [p.grad.detach().float() for p in parameters if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
