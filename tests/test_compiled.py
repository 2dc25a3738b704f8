"""runtime.compile: padded batches change nothing; the compiled step is one graph, few compiles.

Dynamo's graph capture is what these tests hold (graph breaks, recompiles), so they compile with
its 'eager' backend (the captured graph runs as it is): AOTAutograd's backward graphs and
inductor's C++ code generation take minutes per shape on this 2-core CPU.
`python bench/bench_epoch.py --compile off step` runs the real thing (inductor) and times it.
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


def _shapes(batch) -> tuple:
    return (batch.n_rows, tuple(batch.seq.shape), batch.edge_index.shape[1], batch.day_width, batch.n_days)


def _loss_and_gradients(model, batch, cfg, real_rows: int) -> tuple:
    model.zero_grad()
    out = model(batch)
    total, terms = loss_terms(out, batch, cfg.loss, cfg.model.quantiles)
    total.backward()
    return terms, out.point[:real_rows].detach(), [p.grad.clone() for p in model.parameters()]


def test_padded_batches_have_bucket_sizes_that_only_grow_and_the_same_loss_and_gradients(demo_dataset):
    """A 4-day block, then a 1-day block (an epoch's short end) in the 4-day block's shapes."""
    with trainer_for(demo_dataset) as (trainer, _):
        model = trainer.model
        model.set_phase(GAT_PHASE)
        blocks = (trainer.train_days[3:7], trainer.train_days[7:8])
        plain = [trainer.batcher(GAT_PHASE)(days) for days in blocks]
        trainer.cfg = trainer.cfg.replace(**{"runtime.compile": "step"})
        trainer._batchers.clear()
        padded = [trainer.batcher(GAT_PHASE)(days) for days in blocks]
        long = plain[0]
        assert padded[0].n_rows == bucket(long.n_rows) and padded[0].seq.shape[0] == bucket(long.seq.shape[0] + 1)
        assert padded[0].seq.shape[1] == bucket(long.seq.shape[1])
        assert padded[0].edge_index.shape[1] == bucket(long.edge_index.shape[1])
        assert _shapes(padded[1]) == _shapes(padded[0]) and plain[1].n_rows < plain[0].n_rows / 3
        for p, q in zip(plain, padded):
            assert all((a == b).all() for a, b in zip(q.host_rows, p.host_rows))
            terms_a, point_a, grads_a = _loss_and_gradients(model, p, trainer.cfg, p.n_rows)
            terms_b, point_b, grads_b = _loss_and_gradients(model, q, trainer.cfg, p.n_rows)
            torch.testing.assert_close(terms_b, terms_a, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(point_b, point_a, rtol=1e-5, atol=1e-6)
            for a, b in zip(grads_a, grads_b):
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


STEPS = 2
"""Training steps (of TINY's 4 days) of the compile tests: dynamo's capture costs seconds each."""


@pytest.fixture(scope="module")
def eager_loss(demo_dataset) -> float:
    with trainer_for(demo_dataset) as (trainer, metrics):
        trainer.train_days = trainer.train_days[:4 * STEPS]
        return trainer.train_epoch(GAT_PHASE, 0, metrics)["train/loss"]


@pytest.mark.parametrize("mode", ["step", "model"])
def test_the_compiled_step_has_no_graph_break_no_recompile_on_known_shapes_and_trains_as_eager(
        demo_dataset, eager_loss, monkeypatch, mode):
    """runtime.compile 'step' (forward + loss) and 'model' (the model's forward): steps of the
    GAT phase give eager's loss; dynamo compiles each batch shape once, without a graph break."""
    monkeypatch.setattr(compiled, "BACKEND", "eager")
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    with trainer_for(demo_dataset, **{"runtime.compile": mode}) as (trainer, metrics):
        trainer.train_days = trainer.train_days[:4 * STEPS]
        shapes = []
        original = trainer.step.forward_loss

        def watched(batch, *args):
            shapes.append(_shapes(batch))
            return original(batch, *args)

        trainer.step.forward_loss = watched
        loss = trainer.train_epoch(GAT_PHASE, 0, metrics)["train/loss"]
        first_epoch = len(shapes)
        trainer.train_epoch(GAT_PHASE, 1, metrics)              # other blocks (a new day offset)
    counts = compiled.compile_counts()
    assert counts["graph_breaks"] == 0 and counts["graphs"] == counts["compiles"] == len(set(shapes)), (counts, shapes)
    assert set(shapes[first_epoch:]) <= set(shapes[:first_epoch]), shapes   # no recompile in the second epoch
    assert all(a <= b for earlier, later in zip(shapes, shapes[1:])          # shapes only grow
               for a, b in zip(_flat(earlier), _flat(later))), shapes
    assert loss == pytest.approx(eager_loss, rel=1e-5)


def _flat(shape: tuple) -> list[int]:
    return [n for part in shape for n in (part if isinstance(part, tuple) else (part,))]


@pytest.mark.parametrize("changes, message", [
    ({"runtime.devices": 2}, "runtime.compile='step' with runtime.devices=2"),
    ({"train.mode": "safe"}, "runtime.compile='step' needs train.mode='optimized'"),
    ({"model.kind": "ridge"}, "runtime.compile: only the deep model's training step"),
    ({"runtime.compile": "fast"}, "runtime.compile: one of off, model, step, got 'fast'"),
])
def test_compile_settings_that_cannot_work_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig().replace(**{"train.mode": "optimized", "runtime.compile": "step", **changes})
