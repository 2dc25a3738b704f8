"""Host-device syncs of the training step: none per step, one per log interval, one per epoch.

Counted with atft_core.syncs on the CPU, where every tensor read by the host, every size that
depends on values and every boolean-mask index counts (on a GPU each of them would make the
host wait for the device). The day graphs (built once per anchor per run, a sync each) are built
before counting, as they are in every epoch after a run's first.
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
from pathlib import Path

import pytest
import torch

from atft_core.batching import make_day_batch
from atft_core.config import RunConfig, resolve
from atft_core.model import GAT_PHASE
from atft_core.run_files import MetricsWriter, RunFiles, StatusFile
from atft_core.syncs import count_syncs, optimizer_host_tensors
from atft_core.train import Trainer, _seed_everything

TINY = {
    "data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8, "model.encoder_heads": 2,
    "model.gat_heads": 2, "model.graph_corr_window": 20, "train.phase_epochs": (1, 1, 2, 0),
    "train.days_per_step": 4, "runtime.heartbeat_seconds": 1000.0,
}
TRAIN_DAYS = 12
"""Training days kept (3 or 4 steps of up to 4 days, as the epoch's random offset cuts them)."""


@contextlib.contextmanager
def trainer_for(dataset, **changes):
    """A Trainer on a few demo days whose day graphs and GAT-phase batcher are already made (as
    after a run's first epoch in that phase)."""
    cfg = resolve(RunConfig().replace(**{"data.path": str(dataset), **TINY, **changes}),
                  cuda_available=False, cpu_count=1)
    with tempfile.TemporaryDirectory() as tmp:
        files = RunFiles(Path(tmp))
        files.checkpoints.mkdir(parents=True)
        _seed_everything(0)
        status = StatusFile(files, cfg.runtime.heartbeat_seconds)
        trainer = Trainer(cfg, files, cfg.to_dict(), status)
        trainer.train_days = trainer.train_days[:TRAIN_DAYS]
        for day in trainer.train_days:
            trainer.graphs.for_day(day)
        trainer.batcher(GAT_PHASE)        # copies the validity mask to the host, once per run
        with MetricsWriter(files.metrics) as metrics:
            yield trainer, metrics


def test_counter_sees_each_kind_of_sync():
    x = torch.randn(6)
    with count_syncs() as counted:
        x.sum().item()
        float(x.max())
        x.tolist()
        x[x > 0]
        (x > 0).nonzero()
        torch.tensor([1.0])
        x[torch.tensor([0, 2])]                       # integer indices: no sync
    assert counted.reads == {"aten._local_scalar_dense.default": 2, "tolist": 1}
    assert counted.dynamic == {"aten.index.Tensor (boolean mask)": 1, "aten.nonzero.default": 1}
    assert counted.syncs == 5 and sum(counted.uploads.values()) == 2


@pytest.mark.parametrize("changes", [{}, {"loss.target_normalization": "cs_rank", "loss.neutralize": ("feat_ret_1d",),
                                          "train.ema_decay": 0.9}])
def test_a_training_epoch_syncs_once_plus_once_per_log_interval(demo_dataset, changes):
    with trainer_for(demo_dataset, **{"train.log_every_steps": 1000, **changes}) as (trainer, metrics):
        host = functools.partial(optimizer_host_tensors, trainer.optimizer)  # AdamW's step counts
        with count_syncs(host=host) as quiet:
            values = trainer.train_epoch(GAT_PHASE, 0, metrics)
        trainer.cfg = trainer.cfg.replace(**{"train.log_every_steps": 1})
        before = trainer.progress.step
        with count_syncs(host=host) as logged:
            trainer.train_epoch(GAT_PHASE, 1, metrics)
        steps = trainer.progress.step - before
    assert quiet.syncs == 1, quiet.describe()                # the epoch's one read
    assert steps >= 3 and logged.syncs == 1 + steps, logged.describe()  # + the loss of every step
    assert values["gat/grad_norm"] > 0 and values["loss/rankic"] > 0 and values["samples_per_second"] > 0


def test_building_a_batch_reads_nothing_from_the_device(demo_dataset):
    with trainer_for(demo_dataset) as (trainer, _):
        batcher = trainer.batcher(GAT_PHASE)
        days = trainer.train_days[:4]
        with count_syncs() as counted:
            batch = batcher(days)
    assert counted.syncs == 0, counted.describe()
    assert sum(counted.uploads.values()) == 1, counted.describe()   # the index arrays, in one copy
    reference = make_day_batch(trainer.panel, days, trainer.cfg.data.lookback, trainer.graphs, "cpu", trainer.fan)
    assert torch.equal(batch.seq, reference.seq) and torch.equal(batch.edge_index, reference.edge_index)


def test_non_finite_loss_is_caught_at_the_next_read_and_names_its_step(demo_dataset):
    """The check runs at each log interval and at the epoch's end (not every step): the error
    names the first step whose loss was not finite."""
    from atft_core.step import TrainingFailed
    with trainer_for(demo_dataset, **{"train.log_every_steps": 1000}) as (trainer, metrics):
        with torch.no_grad():
            next(trainer.model.heads.parameters()).fill_(float("nan"))
        with pytest.raises(TrainingFailed, match=r"non-finite loss at epoch 1 step 1: huber=nan"):
            trainer.train_epoch(GAT_PHASE, 0, metrics)
        assert trainer.progress.step >= 3                     # ... caught when the epoch is read
