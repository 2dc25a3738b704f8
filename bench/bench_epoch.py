"""One training epoch of the real Trainer over a synthetic panel of any size (CPU or GPU).

    python bench/bench_epoch.py --stocks 943 --days 2181 --features 49          # real-data shape, CPU
    python bench/bench_epoch.py --stocks 4000 --days 2500 --features 300 \
        --device cuda --mode optimized --hidden 64 256                          # the issue's GPU target

Builds a `Panel` in memory (factor-structured returns, random features; no files), hands it to
`atft_core.train.Trainer` and times `Trainer.train_epoch` in phase 2 (FAN and GAT on) with the
trainer's own step: day batches, graphs, loss, backward, optimiser. Reported: one-time set-up
(panel on device, FAN precompute), the epoch's wall time (graphs are built as days are first
met, so a first epoch includes them; `--epochs 2` shows a later one; with `--epochs 4` or more,
min / median / max over the epochs after the first), stock-days per second.
Training days are the panel's days minus the lookback and the validation/test tails.

    python bench/bench_epoch.py --compile off step --epochs 3      # eager, then torch.compile (its first epoch compiles)
    python bench/bench_epoch.py --sync-steps 8 --json out.json     # + host-device syncs per step, JSON

`--sync-steps N` then trains N more steps under atft_core.syncs.count_syncs (on CUDA with the
driver's own count as well) and reports syncs per step (the epoch's one read left out).
`--json PATH` appends one record per setting (the GPU session's table, bench/gpu_session.sh).
`--compile` runs each hidden size once per runtime.compile value, in this one process, and
prints dynamo's counts (frames compiled, graphs, graph breaks) for the compiled ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # bench/machine.py (bench scripts run as python bench/X.py)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stocks", type=int, default=943)
    ap.add_argument("--days", type=int, default=2181)
    ap.add_argument("--features", type=int, default=49)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64])
    ap.add_argument("--mode", choices=["safe", "optimized"], default="optimized")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--days-per-step", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=1, help="epochs timed per setting (the first builds the graphs)")
    ap.add_argument("--compile", nargs="+", choices=["off", "model", "step"], default=["off"],
                    help="runtime.compile values, one setting each")
    ap.add_argument("--compile-backend", default="inductor",
                    help="torch.compile backend (atft_core.compiled.BACKEND; 'eager' checks capture only, fast)")
    ap.add_argument("--extra", nargs="*", default=[], help="more section.name=value overrides")
    ap.add_argument("--sync-steps", type=int, default=0, help="count host-device syncs over this many more steps")
    ap.add_argument("--json", default="", help="append one JSON record per setting to this file")
    ap.add_argument("--label", default="", help="a name for the setting in the JSON record")
    return ap.parse_args(argv)


def synthetic_panel(n_stocks: int, n_days: int, n_features: int, device: str):
    """A panel with 33 sectors, factor-structured returns and standard-normal features."""
    import numpy as np
    import torch
    from atft_core.data.panel import Panel
    g = torch.Generator(device="cpu").manual_seed(0)
    sectors = torch.randint(0, 33, (n_stocks,), generator=g)
    returns = (0.01 * torch.randn(n_days, 1, generator=g) + 0.01 * torch.randn(n_days, 33, generator=g)[:, sectors]
               + 0.02 * torch.randn(n_days, n_stocks, generator=g))
    valid = torch.rand(n_days, n_stocks, generator=g) > 0.03
    features = torch.randn(n_days, n_stocks, n_features, device=device) * valid.to(device)[..., None]
    targets = torch.stack([returns.roll(-h, 0) for h in (1, 5, 10, 20)], -1)
    dates = np.busday_offset(np.datetime64("2015-01-05"), np.arange(n_days), roll="forward")
    return Panel(dates=dates, codes=[f"{1000 + i}0" for i in range(n_stocks)],
                 feature_names=tuple(f"feat_{i:03d}" for i in range(n_features)), features=features,
                 valid=valid.to(device), targets=targets.to(device), returns=(returns * valid).to(device),
                 sectors=sectors.to(device), horizons=(1, 5, 10, 20), fingerprint="synthetic")


def run_setting(args: argparse.Namespace, hidden: int, compile_mode: str) -> None:
    import torch
    import torch._dynamo
    from atft_core import compiled
    from atft_core.config import RunConfig
    from atft_core.run_files import MetricsWriter, RunFiles, StatusFile
    from atft_core.system import resolve_here
    from atft_core.train import Trainer, _configure_torch, _seed_everything
    overrides = {"data.path": "synthetic.parquet", "model.hidden_size": hidden, "train.mode": args.mode,
                 "runtime.device": args.device, "runtime.precision": args.precision,
                 "train.days_per_step": args.days_per_step, "runtime.compile": compile_mode}
    overrides.update(dict(item.split("=", 1) for item in args.extra))
    cfg = resolve_here(RunConfig().replace(**overrides))
    _configure_torch(cfg)
    _seed_everything(cfg.runtime.seed)
    compiled.BACKEND = args.compile_backend
    torch._dynamo.reset()                    # each setting compiles (and counts) from scratch
    torch._dynamo.utils.counters.clear()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        files = RunFiles(Path(tmp) / "run")
        files.root.mkdir(parents=True)
        t0 = time.perf_counter()
        panel = synthetic_panel(args.stocks, args.days, args.features, cfg.runtime.device if args.mode == "optimized" else "cpu")
        trainer = Trainer(cfg, files, {}, StatusFile(files, 3600.0), panel=panel)
        _sync(trainer.device)
        setup = time.perf_counter() - t0
        print(f"hidden {hidden}: {cfg.train.mode}, {cfg.runtime.device}, precision {cfg.runtime.precision}, "
              f"compile {cfg.runtime.compile}, "
              f"{cfg.train.days_per_step} days/step, {len(trainer.train_days)} train days, "
              f"{trainer.model.count_parameters()} params; set-up (panel + FAN precompute) {setup:.1f} s", flush=True)
        walls = []
        with MetricsWriter(files.metrics) as metrics:
            for epoch in range(args.epochs):
                t0 = time.perf_counter()
                values = trainer.train_epoch(2, epoch, metrics)
                _sync(trainer.device)
                wall = time.perf_counter() - t0
                trainer.progress.epoch += 1
                walls.append(wall)
                print(f"  epoch {epoch + 1}: {wall:7.1f} s wall, {values['samples_per_second']:9.0f} stock-days/s "
                      f"(loss {values['train/loss']:.4f}, graphs built {values.get('graph/built', 0):.0f})", flush=True)
            if len(walls) > 2:  # the first epoch also builds every day's graph (and compiles)
                later = walls[1:]
                print(f"  epochs 2-{len(walls)}: min / median / max {min(later):.1f} / {statistics.median(later):.1f} / "
                      f"{max(later):.1f} s", flush=True)
            record = {"label": args.label, "stocks": args.stocks, "days": args.days, "features": args.features,
                      "hidden": hidden, "mode": cfg.train.mode, "device": str(trainer.device),
                      "precision": cfg.runtime.precision, "compile": cfg.runtime.compile,
                      "days_per_step": cfg.train.days_per_step, "train_days": len(trainer.train_days),
                      "setup_seconds": setup, "epoch_seconds": walls,
                      "later_epoch_median": statistics.median(walls[1:]) if len(walls) > 1 else None,
                      "samples_per_second": values["samples_per_second"], "torch": torch.__version__,
                      "gpu": torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else None}
            if cfg.runtime.compile != "off":
                record["compile_backend"] = compiled.BACKEND
                record["compile_counts"] = compiled.compile_counts()
                print(f"  compile: {record['compile_counts']}", flush=True)
            if args.sync_steps:
                record.update(count_step_syncs(trainer, metrics, args.sync_steps))
                cuda = record.get("cuda_syncs_per_step")
                print(f"  syncs per step: {record['syncs_per_step']:.2f} counted"
                      + (f", {cuda:.2f} reported by CUDA" if cuda is not None else "")
                      + f" ({record['sync_detail']})", flush=True)
        if trainer.device.type == "cuda":
            record["peak_gpu_gib"] = torch.cuda.max_memory_allocated(trainer.device) / 2**30
            print(f"  peak GPU memory {record['peak_gpu_gib']:.1f} GiB", flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(record) + "\n")


def count_step_syncs(trainer, metrics, steps: int) -> dict:
    """Host-device syncs per training step over `steps` steps of phase 2 (the epoch's one read
    at its end left out; no log interval falls inside when train.log_every_steps > steps)."""
    from atft_core.syncs import count_syncs, optimizer_host_tensors
    days = trainer.train_days
    trainer.train_days = days[:steps * trainer.cfg.train.days_per_step]
    before = trainer.progress.step
    try:
        with count_syncs(cuda=trainer.device.type == "cuda",
                         host=lambda: optimizer_host_tensors(trainer.optimizer)) as counted:
            trainer.train_epoch(2, 0, metrics)
    finally:
        trainer.train_days = days
    done = max(1, trainer.progress.step - before)
    return {"sync_steps": done, "syncs_per_step": (counted.syncs - 1) / done,
            "cuda_syncs_per_step": (counted.cuda_syncs - 1) / done if counted.cuda_syncs is not None else None,
            "sync_detail": counted.describe()}


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str]) -> None:
    import torch
    from atft_core.allocator import keep_freed_memory
    keep_freed_memory()  # as the trainer's entry point does
    args = parse_args(argv)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, load {load:.1f}, {gpu}; torch {torch.__version__}; "
          f"python {platform.python_version()}")
    print(f"panel: {args.stocks} stocks x {args.days} days x {args.features} features")
    for hidden in args.hidden:
        for compile_mode in args.compile:
            run_setting(args, hidden, compile_mode)


if __name__ == "__main__":
    main(sys.argv[1:])
