"""Phased, day-batched training of ATFT-GAT-FAN (or a baseline) into a run folder.

    python -m atft_core.train --data.path data/demo.parquet --run-dir runs/my-run
    python -m atft_core.train --config my.json --model.hidden_size=256 --run-dir runs/big
    python -m atft_core.train --resume runs/my-run
    python -m atft_core.train --config my.json --print-config

A step takes whole trading days (``train.days_per_step`` consecutive ones), never a random mix of
stock-days, because every ranking loss and metric is cross-sectional. Phases: 0 baseline (no
FAN, no GAT), 1 adds FAN, 2 adds GAT, 3 fine-tunes; early stopping on validation RankIC.
The run folder receives the effective config, status heartbeats, metrics.jsonl, checkpoints
and, at the end, predictions of the best checkpoint on validation and test. A trainer holds the
run folder's lock (`atft_core.run_files.RunLock`) for its whole life: a second trainer on the same
folder stops at once with an error and writes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import platform
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atft_core import __version__
from atft_core.allocator import keep_freed_memory
from atft_core.baselines import fit_baseline
from atft_core.batching import DayBatcher
from atft_core.checkpoint import load_checkpoint, save_checkpoint
from atft_core.config import PHASE_NAMES, ConfigError, RunConfig, build_config, feature_index, parse_overrides
from atft_core.data.errors import DataError
from atft_core.data.panel import Panel, load_panel
from atft_core import distributed
from atft_core.distributed import Group, QuietMetrics, QuietStatus, data_parallel
from atft_core.data.splits import make_splits
from atft_core.ema import WeightAverage, short_run_warning
from atft_core.entry import run_cli
from atft_core.feature_weights import FeatureWeights
from atft_core.graph import GraphCache
from atft_core.health import HealthMonitor
from atft_core.inference import ModelPredictor, eligible_days, evaluate, targets_for
from atft_core.loss import loss_terms
from atft_core.model import ATFTGATFAN, FAN_PHASE, GAT_PHASE
from atft_core.nn.fan import FanInputs, precompute_fan
from atft_core.predictions import write_predictions
from atft_core.plan import check_settings
from atft_core.run_files import (MetricsWriter, RunFiles, RunFolderBusy, RunLock, StatusFile, describe_os_error,
                                 read_json, stop_outcome, update_status, write_json_atomic)
from atft_core.step import EpochStats, TrainingFailed, TrainStep
from atft_core.system import peak_memory, resolve_here

log = logging.getLogger("atft_core.train")


# ---------------------------------------------------------------------------------------------
# Progress that survives a resume


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    """Global epochs completed (1-based numbering in metrics)."""
    step: int = 0
    best_rank_ic: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    skipped_epochs: int = 0
    phase_epochs_done: list[int] = field(default_factory=lambda: [0] * len(PHASE_NAMES))

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "best_rank_ic": self.best_rank_ic,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "skipped_epochs": self.skipped_epochs, "phase_epochs_done": list(self.phase_epochs_done)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Progress":
        return cls(**{k: values[k] for k in cls().to_dict()})


# ---------------------------------------------------------------------------------------------
# Setup helpers


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _configure_torch(cfg: RunConfig) -> None:
    torch.set_num_threads(cfg.runtime.num_threads)
    if cfg.train.mode == "safe":
        torch.use_deterministic_algorithms(True, warn_only=True)


def _autocast_factory(cfg: RunConfig, device: torch.device):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.runtime.precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _code_version() -> str:
    head = Path(__file__).resolve().parents[1] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (head.parent / ref[5:]).read_text().strip()[:12]
        return ref[:12]
    except OSError:
        return __version__


def _lr_factor(cfg: RunConfig, epoch_in_phase: int, step_in_phase: int, steps_in_phase: int) -> float:
    """Schedule within a phase: cosine over steps, step decay per epoch, or constant."""
    if cfg.train.schedule == "cosine":
        progress = min(1.0, step_in_phase / max(1, steps_in_phase))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.train.schedule == "step":
        return cfg.train.step_gamma ** epoch_in_phase
    return 1.0


def _make_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, weight_decay=t.weight_decay)
    optimizer_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return optimizer_cls(params, lr=t.lr, weight_decay=t.weight_decay)


def day_blocks(days: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The (sorted) training days cut into runs of `size` consecutive entries, in random order.

    A step's days are consecutive so that the encoder reads each stock's history once for all
    of them (atft_core/batching.py); the cut points move with a random offset each epoch so
    that no two days are always batched together. Every day appears exactly once.
    """
    days = np.sort(np.asarray(days))
    offset = int(rng.integers(size)) if size > 1 else 0
    blocks = [b for b in np.split(days, np.arange(offset, len(days), size)) if len(b)]
    return [blocks[i] for i in rng.permutation(len(blocks))]


def sample_days(days: np.ndarray, count: int, block: int) -> np.ndarray:
    """About `count` of the sorted `days`, evenly spread, in runs of `block` consecutive entries
    (a prediction pass reads each run's histories once, like a training step); all of them when
    there are fewer, none for 0. The same days every epoch."""
    days = np.sort(np.asarray(days))
    if count <= 0:
        return days[:0]
    if count >= len(days):
        return days
    block = max(1, min(block, count))
    runs = max(1, min(count // block, len(days) // block))
    starts = np.linspace(0, len(days) - block, runs).round().astype(np.int64)
    return np.concatenate([days[s:s + block] for s in starts])


def _setup_logging(files: RunFiles) -> None:
    root = logging.getLogger("atft_core")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    file_handler = logging.FileHandler(files.log)
    file_handler.setFormatter(fmt)
    root.addHandler(file_handler)
    # Launched runs have stderr redirected into train.log already; only echo on a terminal.
    if sys.stderr.isatty():
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        root.addHandler(stream)


# ---------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Trains one run folder from an effective config; see the module docstring."""

    def __init__(self, cfg: RunConfig, files: RunFiles, requested: dict[str, Any], status: StatusFile,
                 panel: Panel | None = None, group: Group | None = None):
        """`panel` replaces loading `cfg.data.path` (benchmarks on synthetic panels of any size).
        `group`: this process's place in a data-parallel run (atft_core.distributed); only its
        rank 0 writes `files` (the others get a status and metrics that keep nothing)."""
        self.cfg = cfg
        self.files = files
        self.requested = requested
        self.status = status
        self.group = group
        self.writer = group is None or group.writer
        self.device = group.device if group is not None else torch.device(cfg.runtime.device)
        self._voted_stop = False
        self.autocast = _autocast_factory(cfg, self.device)
        self.stop_event = threading.Event()
        self.progress = Progress()

        self.panel = panel if panel is not None else load_panel(cfg.data)
        if cfg.train.mode == "optimized":
            self.panel = self.panel.to(self.device)
        self.splits = make_splits(self.panel.dates, cfg.data)
        self.train_days = eligible_days(self.panel, self.splits.train, cfg)
        self.val_days = eligible_days(self.panel, self.splits.val, cfg)
        self.test_days = eligible_days(self.panel, self.splits.test, cfg)
        if len(self.train_days) == 0 or len(self.val_days) == 0:
            raise TrainingFailed(
                f"no usable days: {len(self.train_days)} train / {len(self.val_days)} validation days have "
                f"a full {cfg.data.lookback}-day window and >= {cfg.data.min_stocks_per_day} stocks"
            )
        self.is_deep = cfg.model.kind == "atft_gat_fan"
        self.train_sample = sample_days(self.train_days, cfg.train.train_eval_days, cfg.train.days_per_step)
        self.health = HealthMonitor(cfg)
        self.neutralize_index = feature_index(cfg.loss.neutralize, self.panel.feature_names, "loss.neutralize")
        self.model: ATFTGATFAN | None = None
        self.graphs: GraphCache | None = None
        self.average: WeightAverage | None = None
        if self.is_deep:
            self.model = ATFTGATFAN(cfg.model, len(self.panel.feature_names), len(cfg.data.horizons)).to(self.device)
            self.optimizer = _make_optimizer(cfg, self.model)
            if cfg.train.ema_decay > 0:
                self.average = WeightAverage(self.model, cfg.train.ema_decay)
                if message := short_run_warning(cfg.train.ema_decay, self.plan()["steps_planned"]):
                    status.warn(message)
            if cfg.model.use_gat:
                self.graphs = GraphCache(self.panel.returns, self.panel.valid, self.panel.sectors, cfg.model, self.device)
            self.step = TrainStep(cfg, self.model, self.optimizer, self.average, self.neutralize_index, self.autocast,
                                  **data_parallel(self.model, group))
        # FAN's per-step inputs depend on the data only: computed once here, not every step.
        uses_fan = self.is_deep and cfg.model.fan_top_k > 0 and any(cfg.train.phase_epochs[FAN_PHASE:])
        self.fan = precompute_fan(self.panel.features, cfg.data.lookback, cfg.model.fan_top_k) if uses_fan else None
        self._batchers: dict[tuple[bool, bool], DayBatcher] = {}
        if group is not None:
            group.bind(self.panel, cfg.data.lookback)

    # -- facts -------------------------------------------------------------------------------
    def resolved_facts(self) -> dict[str, Any]:
        n_params = self.model.count_parameters() if self.model is not None else 0
        return {
            "device": str(self.device),
            "devices": self.group.devices if self.group is not None else [str(self.device)],
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.processor() or platform.machine(),
            "n_features": len(self.panel.feature_names),
            "feature_names": list(self.panel.feature_names),
            "n_stocks": len(self.panel.codes),
            "n_days": len(self.panel.dates),
            "n_params": n_params,
            "dataset_fingerprint": self.panel.fingerprint,
            "splits": self.splits.describe(),
            "train_days": len(self.train_days),
            "val_days": len(self.val_days),
            "test_days": len(self.test_days),
            "epochs_planned": self.epochs_planned,
            "code_version": _code_version(),
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
        }

    @property
    def stop_requested(self) -> bool:
        """A stop was asked for (SIGTERM, Ctrl-C); in a data-parallel run, by any rank, as of
        the last step's vote, so that every rank stops at the same step."""
        return self._voted_stop if self.group is not None else self.stop_event.is_set()

    def _vote_stop(self) -> bool:
        if self.group is not None:
            self._voted_stop = self.group.vote(self.stop_event.is_set())
        return self.stop_requested

    @property
    def epochs_planned(self) -> int:
        return sum(self.cfg.train.phase_epochs) if self.is_deep else 1

    def plan(self) -> dict[str, int]:
        """The run's plan in epochs and optimiser steps, and the steps done (status.json: readers
        estimate the time left from step progress, `atft_core.runs.progress`)."""
        per_epoch = math.ceil(len(self.train_days) / self.cfg.train.days_per_step) if self.is_deep else 0
        return {"epochs_planned": self.epochs_planned, "steps_per_epoch": per_epoch,
                "steps_planned": per_epoch * self.epochs_planned, "step": self.progress.step}

    def write_config(self) -> None:
        facts = self.resolved_facts()
        write_json_atomic(self.files.config, {"config": self.cfg.to_dict(), "requested": self.requested, "resolved": facts})
        log.info("effective config: %s", self.cfg.to_json(indent=None))
        log.info("resolved: device=%s params=%d features=%d stocks=%d days=%d fingerprint=%s torch=%s code=%s",
                 facts["device"], facts["n_params"], facts["n_features"], facts["n_stocks"], facts["n_days"],
                 facts["dataset_fingerprint"], facts["torch_version"], facts["code_version"])
        log.info("splits: %s", facts["splits"])
        log.info("features (%d): %s", facts["n_features"], ", ".join(facts["feature_names"]))

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_payload(self, phase: int) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "config": self.cfg.to_dict(), "requested": self.requested, "kind": self.cfg.model.kind,
            "feature_names": list(self.panel.feature_names), "phase": phase, "progress": self.progress.to_dict(),
        }
        if self.model is not None:
            # "model" holds the weights that were evaluated (the average when train.ema_decay > 0),
            # which is what best.pt's readers load; the raw weights are kept for resuming.
            if self.average is not None:
                payload["model"] = self.average.averaged_state_dict(self.model)
                payload["raw_model"] = self.model.state_dict()
                payload["average_updates"] = self.average.updates
            else:
                payload["model"] = self.model.state_dict()
            payload["optimizer"] = self.optimizer.state_dict()
            payload["rng"] = _rng_state(self.device)
            payload["health"] = self.health.state_dict()
        else:
            payload["baseline"] = self.baseline.state_dict()
        return payload

    def save(self, path: Path, phase: int) -> None:
        """Write a checkpoint (rank 0 of a data-parallel run only)."""
        if self.writer:
            save_checkpoint(path, self.checkpoint_payload(phase))

    def restore(self) -> int:
        """Load last.pt; returns the phase to continue in."""
        state = load_checkpoint(self.files.last_checkpoint, map_location=self.device)
        self.progress = Progress.from_dict(state["progress"])
        if self.model is not None:
            self.model.load_state_dict(state.get("raw_model", state["model"]))
            self.optimizer.load_state_dict(state["optimizer"])
            if self.average is not None:
                if "raw_model" not in state:
                    raise TrainingFailed(f"{self.files.last_checkpoint} was saved without a weight average; "
                                         "resume it with its own settings (train.ema_decay=0)")
                self.average.load(state["model"], int(state["average_updates"]))
            if "rng" in state:  # dropout then draws what the uninterrupted run drew
                _set_rng_state(state["rng"], self.device)
            self.health = HealthMonitor(self.cfg, state.get("health"))
        if self.writer:
            _truncate_metrics(self.files.metrics, self.progress.epoch)
        log.info("resumed from %s at epoch %d (step %d)", self.files.last_checkpoint, self.progress.epoch, self.progress.step)
        return int(state["phase"])

    def phase_inputs(self, phase: int) -> tuple[GraphCache | None, FanInputs | None]:
        """The day graphs and FAN inputs that `phase` uses (None where it does not)."""
        return (self.graphs if phase >= GAT_PHASE else None,
                self.fan if phase >= FAN_PHASE else None)

    def batcher(self, phase: int) -> DayBatcher:
        """The training batches' builder for `phase` (made once per set of inputs)."""
        graphs, fan = self.phase_inputs(phase)
        key = (graphs is not None, fan is not None)
        if key not in self._batchers:
            self._batchers[key] = DayBatcher(self.panel, self.cfg.data.lookback, graphs, self.device, fan,
                                             pad=self.cfg.runtime.compile != "off")   # few shapes to compile
        return self._batchers[key]

    # -- one epoch ---------------------------------------------------------------------------
    def train_epoch(self, phase: int, epoch_in_phase: int, metrics: MetricsWriter) -> dict[str, float]:
        """One pass over the training days. The steps read nothing back from the device; the
        loss is read every train.log_every_steps steps and the epoch's sums once at the end
        (atft_core.step, where a non-finite loss is caught)."""
        cfg, model = self.cfg, self.model
        assert model is not None
        model.train()
        model.set_phase(phase)
        if self.graphs is not None:
            self.graphs.reset_stats()
        rng = np.random.default_rng(cfg.runtime.seed + self.progress.epoch)
        chunks = day_blocks(self.train_days, cfg.train.days_per_step, rng)
        steps_in_phase = len(chunks) * cfg.train.phase_epochs[phase]
        self.status.set(epoch_steps_done=0, epoch_steps_planned=len(chunks))
        batcher = self.batcher(phase)
        stats = EpochStats(self.device, self.progress.epoch + 1, self.progress.step,
                           self.group.reduce if self.group is not None else None)
        started = time.perf_counter()
        for i, chunk in enumerate(chunks):
            lr = cfg.train.lr * cfg.train.phase_lr_scale[phase] * _lr_factor(
                cfg, epoch_in_phase, epoch_in_phase * len(chunks) + i, steps_in_phase)
            if self.group is None:
                self.step(batcher(chunk), phase, lr, stats)
            else:  # this rank's part of the step's days, weighted by its share of them
                self.step(batcher(self.group.part(chunk), history_from=int(chunk[0])), phase, lr, stats,
                          self.group.share(chunk))
            self.progress.step += 1
            self.status.note(step=self.progress.step, epoch_steps_done=i + 1,
                             seconds_per_step=(time.perf_counter() - started) / (i + 1))
            if self.progress.step % cfg.train.log_every_steps == 0:
                metrics.log(epoch=self.progress.epoch + 1, step=self.progress.step, phase=phase,
                            values={"train/loss_step": stats.read_step()})
            if self._vote_stop():
                break
        values = stats.read_epoch()
        seconds = time.perf_counter() - started
        values.update({"lr": lr, "epoch_seconds": seconds,
                       "samples_per_second": values.pop("rows") / max(seconds, 1e-9)})
        if self.graphs is not None:
            values.update({f"graph/{k}": v for k, v in self.graphs.stats().items()})
        values.update(peak_memory(self.device))
        return values

    def validate(self, phase: int) -> dict[str, float | None]:
        """Validation metrics and loss of the current model, from one pass over the days."""
        cfg = self.cfg
        assert self.model is not None
        self.model.set_phase(phase)
        losses: list[torch.Tensor] = []

        def add_loss(out, batch) -> None:
            loss, _ = loss_terms(out, batch, cfg.loss, cfg.model.quantiles,
                                 rank_scale=cfg.train.phase_rank_loss_scale[phase],
                                 horizon_weights=cfg.loss.horizon_weights,
                                 neutralize_index=self.neutralize_index)
            losses.append(loss.detach())

        predictor = ModelPredictor(self.model, self.panel, cfg, *self.phase_inputs(phase), self.device,
                                   self.autocast)
        with self.average.applied(self.model) if self.average is not None else contextlib.nullcontext():
            pred = predictor(self.val_days, on_batch=add_loss)
            train_pred = predictor(self.train_sample) if len(self.train_sample) else None
        values = evaluate(pred, targets_for(self.panel, self.val_days), cfg.data.horizons, "val")
        values["val/loss"] = torch.stack(losses).double().mean().item() if losses else None
        if train_pred is not None:  # the same metrics on training days: over- or under-fitting per horizon
            values.update(evaluate(train_pred, targets_for(self.panel, self.train_sample), cfg.data.horizons, "train"))
        return values

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, start_phase: int, metrics: MetricsWriter) -> str:
        """Run every remaining phase; returns the final state."""
        if not self.is_deep:
            return self.fit_baseline(metrics)
        cfg, p = self.cfg, self.progress
        if not self.files.last_checkpoint.exists():  # a stop in the first epoch can resume from here
            self.save(self.files.last_checkpoint, start_phase)
        for phase in range(start_phase, len(PHASE_NAMES)):
            if phase > start_phase:
                p.bad_epochs = 0
            while p.phase_epochs_done[phase] < cfg.train.phase_epochs[phase]:
                if self.stop_requested:
                    return "stopped"
                epoch_in_phase, step_before = p.phase_epochs_done[phase], p.step
                self.status.set(phase=phase, phase_name=PHASE_NAMES[phase], epoch=p.epoch)
                values = self.train_epoch(phase, epoch_in_phase, metrics)
                if self.stop_requested:
                    self._discard_partial_epoch(step_before)
                    return "stopped"
                validation_started = time.perf_counter()
                values.update(self.validate(phase) if self.group is None
                              else self.group.from_writer(lambda: self.validate(phase)))
                values["val_seconds"] = time.perf_counter() - validation_started
                p.epoch += 1
                p.phase_epochs_done[phase] += 1
                improved = self._track_best(values.get("val/rank_ic"))
                values["val/best_rank_ic"] = p.best_rank_ic
                metrics.log(epoch=p.epoch, step=p.step, phase=phase, values=values)
                self._check_degenerate(values.get("val/pred_std"))
                self.check_health(p.epoch, phase, values)
                if improved:
                    self.save(self.files.best_checkpoint, phase)
                self.save(self.files.last_checkpoint, phase)
                log.info("epoch %d phase %d (%s): train/loss=%.4f val/rank_ic=%s val/ic=%s alpha=%.3f %.1fs %.0f stock-days/s",
                         p.epoch, phase, PHASE_NAMES[phase], values["train/loss"], _fmt(values.get("val/rank_ic")),
                         _fmt(values.get("val/ic")), values["gat/alpha"], values["epoch_seconds"], values["samples_per_second"])
                self.status.set(epoch=p.epoch, best_rank_ic=_finite(p.best_rank_ic), best_epoch=p.best_epoch,
                                val_seconds=values["val_seconds"])
                if cfg.train.early_stopping_patience and p.bad_epochs >= cfg.train.early_stopping_patience:
                    remaining = cfg.train.phase_epochs[phase] - p.phase_epochs_done[phase]
                    p.skipped_epochs += remaining
                    log.info("early stopping in phase %d after %d epochs without a better val/rank_ic", phase, p.bad_epochs)
                    break
        return "early_stopped" if p.skipped_epochs else "completed"

    def _discard_partial_epoch(self, step_before: int) -> None:
        """A stop mid-epoch keeps last.pt at the end of the previous epoch: a resume repeats the
        whole epoch, so the run takes the steps (and in safe mode reaches the metrics) of one
        that was never stopped."""
        done, planned = self.status.get("epoch_steps_done", 0), self.status.get("epoch_steps_planned", 0)
        log.info("stopped during epoch %d after %d of %d steps: those steps are discarded; a resume repeats "
                 "the epoch from last.pt (end of epoch %d)", self.progress.epoch + 1, done, planned, self.progress.epoch)
        self.progress.step = step_before
        self.status.set(step=step_before, epoch_steps_done=0)

    def _track_best(self, rank_ic: float | None) -> bool:
        p = self.progress
        if rank_ic is not None and rank_ic > p.best_rank_ic + self.cfg.train.early_stopping_min_delta:
            p.best_rank_ic, p.best_epoch, p.bad_epochs = rank_ic, p.epoch, 0
            return True
        p.bad_epochs += 1
        return not self.files.best_checkpoint.exists()

    def _check_degenerate(self, pred_std: float | None) -> None:
        threshold = self.cfg.train.degenerate_std_threshold
        if pred_std is not None and pred_std < threshold:
            message = f"predictions degenerate: val/pred_std={pred_std:.3g} < train.degenerate_std_threshold={threshold}"
            self.status.warn(message, topic="predictions degenerate")
            if self.cfg.train.stop_on_degenerate:
                raise TrainingFailed(message)

    def check_health(self, epoch: int, phase: int, values: dict[str, Any]) -> None:
        """The health alarms of a finished epoch (atft_core.health) as status.json warnings."""
        for alarm in self.health.check(epoch, phase, values):
            self.status.warn(alarm.message, topic=alarm.topic)

    def fit_baseline(self, metrics: MetricsWriter) -> str:
        started = time.perf_counter()
        self.baseline = fit_baseline(self.cfg, self.panel, self.train_days)
        values: dict[str, Any] = evaluate(self.baseline.predict(self.panel, self.val_days),
                                          targets_for(self.panel, self.val_days), self.cfg.data.horizons, "val")
        if len(self.train_sample):
            values.update(evaluate(self.baseline.predict(self.panel, self.train_sample),
                                   targets_for(self.panel, self.train_sample), self.cfg.data.horizons, "train"))
        seconds = time.perf_counter() - started
        self.progress.epoch = 1
        self.progress.best_rank_ic = values.get("val/rank_ic") or -math.inf
        self.progress.best_epoch = 1
        values.update(peak_memory(self.device))
        values.update({"epoch_seconds": seconds, "val/best_rank_ic": self.progress.best_rank_ic,
                       "samples_per_second": len(self.train_days) * len(self.panel.codes) / max(seconds, 1e-9)})
        metrics.log(epoch=1, step=0, phase=0, values=values)
        log.info("baseline %s: %s val/rank_ic=%s", self.cfg.model.kind, self.baseline.describe(), _fmt(values.get("val/rank_ic")))
        for path in (self.files.best_checkpoint, self.files.last_checkpoint):
            save_checkpoint(path, self.checkpoint_payload(0))
        return "completed"

    # -- final evaluation --------------------------------------------------------------------
    def final_evaluation(self, metrics: MetricsWriter) -> None:
        """Best checkpoint -> predictions on validation and test, test metrics logged once."""
        predictor = self.best_predictor()
        parts = {"val": self.val_days, "test": self.test_days}
        if self.is_deep:
            weights = FeatureWeights()
            preds = {"val": predictor(self.val_days, on_batch=weights.add)}
            preds.update({name: predictor(days) for name, days in parts.items() if name != "val" and len(days)})
            weights.write(self.files.feature_weights, self.panel.feature_names, "val", self.progress.best_epoch)
        else:
            preds = {name: predictor(days) for name, days in parts.items() if len(days)}
        write_predictions(self.files.predictions, self.panel, parts, preds, self.cfg.data.horizons)
        values = (evaluate(preds["test"], targets_for(self.panel, self.test_days), self.cfg.data.horizons, "test")
                  if "test" in preds else {})
        values.update(peak_memory(self.device))   # predicting peaks above training; the next pre-flight reads it
        metrics.log(epoch=self.progress.epoch, step=self.progress.step, phase=-1, values=values)
        if "test" in preds:
            log.info("test (best checkpoint, epoch %d): rank_ic=%s ic=%s", self.progress.best_epoch,
                     _fmt(values.get("test/rank_ic")), _fmt(values.get("test/ic")))

    def best_predictor(self):
        if not self.is_deep:
            return lambda days: self.baseline.predict(self.panel, days)
        state = load_checkpoint(self.files.best_checkpoint, map_location=self.device)
        self.model.load_state_dict(state["model"])
        phase = int(state["phase"])
        self.model.set_phase(phase)
        return ModelPredictor(self.model, self.panel, self.cfg, *self.phase_inputs(phase), self.device, self.autocast)


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    """Drop metric lines of epochs after the checkpoint (they will be recomputed), atomically."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a killed trainer
        if row.get("epoch", 0) <= last_epoch and row.get("phase", 0) >= 0:
            kept.append(line)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _rng_state(device: torch.device) -> dict[str, Any]:
    """torch's generators (dropout draws from them), for a resume that continues their streams."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ---------------------------------------------------------------------------------------------
# Entry point


def run_training(requested: RunConfig, run_dir: str | Path, resume: bool = False, lock_fd: int | None = None) -> str:
    """Train `requested` into `run_dir`; returns the final state. Never raises for a failed run:
    the failure is recorded in status.json (state 'failed', with the error) and returned.

    The run folder's lock is taken first (or `lock_fd`, an inherited descriptor that holds it, is
    kept): RunFolderBusy, with nothing written, when another trainer holds it.
    """
    files = RunFiles(Path(run_dir))
    files.root.mkdir(parents=True, exist_ok=True)
    lock = RunLock(files, lock_fd) if lock_fd is not None else RunLock(files).acquire()
    try:
        lock.record_holder(os.getpid())
        return _train_locked(requested, files, resume)
    finally:
        lock.release()


def _train_locked(requested: RunConfig, files: RunFiles, resume: bool) -> str:
    files.checkpoints.mkdir(exist_ok=True)
    files.stop_request.unlink(missing_ok=True)   # an earlier launch's: this one has not been asked to stop
    _setup_logging(files)
    status = StatusFile(files, requested.runtime.heartbeat_seconds)
    now = time.time()
    # A resumed run keeps its first start: its elapsed time and duration span every launch.
    started = (status.get("started") if resume else None) or now
    status.set(state="running", pid=os.getpid(), started=started, launch_started=now, ended=None, error=None,
               phase_name="")
    status.start()
    trainer: Trainer | None = None
    group: Group | None = None
    # Installed first, so a stop during start-up (panel loading) is honoured too.
    stop_event = threading.Event()
    previous = _install_stop_handlers(stop_event)
    try:
        status.training_started()
        cfg = resolve_here(requested)
        _configure_torch(cfg)
        _seed_everything(cfg.runtime.seed)
        if cfg.runtime.devices > 1:
            group = distributed.start(cfg, files.root, resume, on_failure=functools.partial(_record_failure, status))
            status.set(ranks=group.pids())
        trainer = Trainer(cfg, files, requested.to_dict(), status, group=group)
        trainer.stop_event = stop_event
        start_phase = trainer.restore() if resume and files.last_checkpoint.exists() else 0
        trainer.write_config()
        status.set(device=group.describe() if group else str(trainer.device), **trainer.plan())
        with MetricsWriter(files.metrics) as metrics:
            state = trainer.fit(start_phase, metrics)
            if group is not None:  # the other ranks are done: let them go before the evaluation
                trainer.step.forward = trainer.model   # DDP goes before its process group (see train_rank)
                group.close()
                group = None
            if state != "stopped":
                trainer.final_evaluation(metrics)
        status.training_stopped()
        error = None
        if state == "stopped":   # a sweep's pruner stops a run as 'pruned', saying why
            state, error = stop_outcome(files)
        status.finish(state=state, ended=time.time(), epoch=trainer.progress.epoch, error=error)
        log.info("run %s%s", state, f": {error}" if error else "")
        return state
    except Exception as exc:  # the run's outcome is recorded, whatever went wrong
        error = describe_os_error(exc, files.root) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        if group is not None and not isinstance(exc, TrainingFailed):  # most likely a rank died: say which
            error = group.failure() or error
        status.training_stopped()
        status.finish(state="failed", ended=time.time(), error=error)   # first: on a full disk the log may not fit
        log.exception("run failed: %s", error)
        return "failed"
    finally:
        if group is not None:
            group.close(abort=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        status.close()


def _record_failure(status: StatusFile, reason: str) -> None:
    """The watchdog's last word when a rank died and rank 0 could not end by itself."""
    status.training_stopped()
    status.finish(state="failed", ended=time.time(), error=reason)
    log.error("run failed: %s", reason)


def train_rank(cfg: RunConfig, run_dir: Path, resume: bool, store: Any, rank: int, world: int) -> str:
    """Rank `rank` > 0 of a data-parallel run (atft_core.worker): its part of every step of
    the effective `cfg`, from `run_dir`'s last.pt with `resume`; writes nothing. Returns the
    state its loop ended in (the same as rank 0's)."""
    _configure_torch(cfg)
    _seed_everything(cfg.runtime.seed)
    group = distributed.join(store, rank, world, cfg)
    stop_event = threading.Event()
    previous = _install_stop_handlers(stop_event)
    trainer: Trainer | None = None
    try:
        files = RunFiles(Path(run_dir))
        trainer = Trainer(cfg, files, cfg.to_dict(), QuietStatus(), group=group)
        trainer.stop_event = stop_event
        start_phase = trainer.restore() if resume and files.last_checkpoint.exists() else 0
        return trainer.fit(start_phase, QuietMetrics())
    finally:
        del trainer   # DistributedDataParallel must go before its process group: its teardown can hang after
        group.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _install_stop_handlers(stop_event: threading.Event) -> dict[int, Any]:
    """SIGTERM (the launcher's stop) and a first Ctrl-C (SIGINT) set `stop_event`: the trainer
    ends its step, saves last.pt and records 'stopped', so the run can be resumed. A second
    Ctrl-C interrupts at once. Returns the previous handlers, to be restored."""
    previous: dict[int, Any] = {}

    def on_interrupt(*_: Any) -> None:
        stop_event.set()
        signal.signal(signal.SIGINT, previous[signal.SIGINT] or signal.SIG_DFL)

    previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # an inherited "ignore" (nohup, &) stays
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, on_interrupt)
    return previous


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m atft_core.train", allow_abbrev=False,
        description="Train one run folder. Settings are given as --section.field=value "
                    "(e.g. --model.hidden_size=128); --print-config shows every one.")
    p.add_argument("--config", help="JSON config file (partial is fine; defaults fill the rest)")
    p.add_argument("--run-dir", help="the run folder to train into (created if missing)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint, "
                   "with the settings it was started with")
    p.add_argument("--print-config", action="store_true", help="print the effective config (resolved for this "
                   "machine) and exit")
    p.add_argument("--lock-fd", type=int, help=argparse.SUPPRESS)   # the launcher's: a descriptor holding the run lock
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI: see the module docstring. Exit code 0 for completed/early_stopped/stopped, 2 for a bad
    command line or setting (one line on stderr), 1 for a failed run."""
    keep_freed_memory()
    run_dir: Path | None = None
    try:
        args, rest = _parser().parse_known_args(argv)   # argv None: argparse reads the command line
        overrides, unknown = parse_overrides(rest)
        if unknown:
            raise ConfigError(f"unknown argument {unknown[0]!r}; settings are given as --section.name=value "
                              "(see --print-config for every setting)")
        if args.resume:
            if overrides or args.config:
                raise ConfigError("--resume continues a run with its own settings; start a new run to change them")
            run_dir, cfg = Path(args.resume), _requested_config(Path(args.resume))
        else:
            run_dir, cfg = (Path(args.run_dir) if args.run_dir else None), build_config(args.config, overrides)
        if args.print_config:
            print(resolve_here(cfg).to_json())
            return 0
        if run_dir is None:
            raise ConfigError("--run-dir DIR is required (or --resume DIR, or --print-config)")
        if not args.resume:
            check_settings(cfg)   # what the dataset refutes fails here, before the run folder is touched
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if run_dir is not None and not args.resume:
            _record_refusal(RunFiles(run_dir), exc, args.lock_fd)
        return 2
    try:
        state = run_training(cfg, run_dir, resume=bool(args.resume), lock_fd=args.lock_fd)
    except RunFolderBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if state in ("completed", "early_stopped", "stopped") else 1


def _record_refusal(files: RunFiles, exc: Exception, lock_fd: int | None) -> None:
    """A folder made for this trainer (status 'queued') records why it was refused, so the run
    shows as failed with the reason instead of as a trainer that vanished. Only under the run's
    lock: the launcher's inherited descriptor, or the lock taken here when no other process holds
    it (a trainer that owns the folder is never written over)."""
    if (read_json(files.status) or {}).get("state") != "queued":
        return
    try:
        lock = RunLock(files, lock_fd) if lock_fd is not None else RunLock(files).acquire()
    except (RunFolderBusy, OSError):
        return
    try:
        if (read_json(files.status) or {}).get("state") == "queued":
            update_status(files, state="failed", ended=time.time(), error=f"{type(exc).__name__}: {exc}")
    finally:
        if lock_fd is None:
            lock.release()


def _requested_config(run_dir: Path) -> RunConfig:
    """The config a run was asked for: config.json's `requested` (or run.json's, before training wrote one)."""
    for name in ("config.json", "run.json"):
        values = read_json(run_dir / name)
        if values and isinstance(values.get("requested"), dict):
            return RunConfig.from_dict(values["requested"])
    raise ConfigError(f"{run_dir} has no config.json or run.json with the requested config; nothing to resume")


if __name__ == "__main__":
    run_cli(main)
