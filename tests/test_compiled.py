"""runtime.compile: padded batches change nothing; the compiled step is one graph, few compiles.

Dynamo's graph capture is what these tests hold (graph breaks, recompiles), so they compile with
its 'eager' backend (the captured graph runs as it is): AOTAutograd's backward graphs and
inductor's C++ code generation take minutes per shape on this 2-core CPU.
bench/bench_compile.py runs the real thing (inductor) and times it.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
import torch
import torch._dynamo

from atft_core import compiled
from atft_core.batching import bucket
from atft_core.config import ConfigError, RunConfig, resolve
from atft_core.loss import loss_terms
from atft_core.model import GAT_PHASE
from atft_core.run_files import MetricsWriter, RunFiles, StatusFile
from atft_core.train import Trainer, _seed_everything

TINY = {
    "data.lookback": 5, "model.fan_top_k": 2, "model.hidden_size": 8, "model.encoder_heads": 2,
    "model.gat_heads": 2, "model.graph_corr_window": 20, "train.phase_epochs": (1, 1, 2, 0),
    "train.days_per_step": 4, "runtime.heartbeat_seconds": 1000.0,
    "model.encoder_dropout": 0.0, "model.gat_dropout": 0.0,
    "train.mode": "optimized", "runtime.precision": "fp32",   # compile needs optimized mode
}


@contextlib.contextmanager
def trainer_for(dataset, **changes):
    cfg = resolve(RunConfig().replace(**{"data.path": str(dataset), **TINY, **changes}),
                  cuda_available=False, cpu_count=1)
    with tempfile.TemporaryDirectory() as tmp:
        files = RunFiles(Path(tmp))
        files.checkpoints.mkdir(parents=True)
        _seed_everything(0)
        trainer = Trainer(cfg, files, cfg.to_dict(), StatusFile(files, cfg.runtime.heartbeat_seconds))
        trainer.train_days = trainer.train_days[:24]
        with MetricsWriter(files.metrics) as metrics:
            yield trainer, metrics


def test_bucket_sizes():
    assert [bucket(n) for n in (0, 1, 15, 16, 17, 100, 943, 7000, 7169)] == [0, 1, 15, 16, 18, 104, 960, 7168, 7680]
    assert all(n <= bucket(n) <= 1.125 * n + 1 for n in range(1, 5000))


def test_a_padded_batch_has_bucket_sizes_and_the_same_loss_and_gradients(demo_dataset):
    with trainer_for(demo_dataset) as (trainer, _):
        model = trainer.model
        model.set_phase(GAT_PHASE)
        days = trainer.train_days[3:7]
        plain = trainer.batcher(GAT_PHASE)(days)
        trainer.cfg = trainer.cfg.replace(**{"runtime.compile": "step"})
        trainer._batchers.clear()
        padded = trainer.batcher(GAT_PHASE)(days)
        assert padded.n_rows == bucket(plain.n_rows) and padded.seq.shape[0] == bucket(plain.seq.shape[0] + 1)
        assert padded.seq.shape[1] == bucket(plain.seq.shape[1]) and padded.n_days == plain.n_days + 1
        assert padded.edge_index.shape[1] == bucket(plain.edge_index.shape[1])
        assert all((a == b).all() for a, b in zip(padded.host_rows, plain.host_rows))
        results = []
        for batch in (plain, padded):
            model.zero_grad()
            out = model(batch)
            total, terms = loss_terms(out, batch, trainer.cfg.loss, trainer.cfg.model.quantiles)
            total.backward()
            results.append((terms, out.point[:plain.n_rows].detach(), [p.grad.clone() for p in model.parameters()]))
        (terms_a, point_a, grads_a), (terms_b, point_b, grads_b) = results
        torch.testing.assert_close(terms_b, terms_a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(point_b, point_a, rtol=1e-5, atol=1e-6)
        for a, b in zip(grads_a, grads_b):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_the_compiled_step_is_one_graph_with_few_recompiles_and_trains_as_eager(demo_dataset, monkeypatch):
    """runtime.compile='step' (forward + loss; 'model' compiles a part of the same graph)."""
    monkeypatch.setattr(compiled, "BACKEND", "eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with trainer_for(demo_dataset) as (trainer, metrics):
        trainer.train_days = trainer.train_days[:12]
        eager = trainer.train_epoch(GAT_PHASE, 0, metrics)["train/loss"]
    with trainer_for(demo_dataset, **{"runtime.compile": "step"}) as (trainer, metrics):
        trainer.train_days = trainer.train_days[:12]
        shapes = set()
        original = trainer.step.forward_loss

        def watched(batch, *args):
            shapes.add((batch.n_rows, tuple(batch.seq.shape), batch.edge_index.shape[1], batch.day_width, batch.n_days))
            return original(batch, *args)

        trainer.step.forward_loss = watched
        loss = trainer.train_epoch(GAT_PHASE, 0, metrics)["train/loss"]
    counts = compiled.compile_counts()
    assert counts["graph_breaks"] == 0, counts
    assert 1 <= counts["graphs"] <= len(shapes) and counts["recompiles"] <= len(shapes), (counts, len(shapes))
    assert len(shapes) <= 3                               # 3-4 steps of up to 4 days
    assert loss == pytest.approx(eager, rel=1e-4)


def test_compile_with_several_devices_is_refused():
    with pytest.raises(ConfigError, match="runtime.compile='step' with runtime.devices=2"):
        RunConfig().replace(**{"runtime.compile": "step", "runtime.devices": 2})
