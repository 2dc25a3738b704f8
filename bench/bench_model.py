"""Throughput of ATFT-GAT-FAN forward+backward and of the per-day graph build, on this machine.

    python bench/bench_model.py                 # both allocator settings, hidden 64 and 256
    python bench/bench_model.py --hidden 64 --iters 5 --malloc tuned --bf16

Measures stock-days per second for a batch of `--days` whole days x `--stocks` stocks x
`--lookback` x `--features` (phase 3: FAN on, GAT on or off), the time to build one day's graph
and to gather one day batch; `--bf16` adds CPU bf16 autocast timings. glibc's allocator
maps/unmaps the large buffers of PyG message passing on every call; with MALLOC_MMAP_THRESHOLD_
and MALLOC_TRIM_THRESHOLD_ raised it keeps them, which DESIGN.md measured at ~2x for the GAT. The bench re-runs itself in a child process with and without those
variables (they only take effect at process start) and prints both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model  # bench/machine.py (bench scripts run as python bench/X.py)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=8)
    ap.add_argument("--stocks", type=int, default=943)
    ap.add_argument("--lookback", type=int, default=20)
    ap.add_argument("--features", type=int, default=50)
    ap.add_argument("--horizons", type=int, default=4)
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5, help="timed steps per setting after 1 warm-up; the median is reported")
    ap.add_argument("--graph-window", type=int, default=60)
    ap.add_argument("--graph-top-k", type=int, default=10)
    ap.add_argument("--malloc", choices=["both", "default", "tuned"], default="both",
                    help="run with the default allocator, the tuned one, or both (in child processes)")
    ap.add_argument("--bf16", action="store_true", help="also time the step under CPU bf16 autocast")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def machine_line(threads: int) -> str:
    import torch
    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {cpu}, {os.cpu_count()} cpus, load {load:.1f}; torch {torch.__version__}, "
            f"threads {threads}; python {platform.python_version()}")


def make_inputs(args: argparse.Namespace, cfg):
    """A synthetic batch of whole days with real graphs (factor-structured returns)."""
    import torch
    from atft_core.batching import DayBatch
    from atft_core.graph import build_graph
    from atft_core.nn.fan import FrequencyAdaptiveNorm
    n, days = args.stocks, args.days
    sectors = torch.randint(0, 33, (n,))
    edges, attrs = [], []
    for b in range(days):
        factor = torch.randn(args.graph_window, 33)
        returns = 0.01 * factor[:, sectors] + 0.02 * torch.randn(args.graph_window, n)
        ei, ea = build_graph(returns, torch.ones(n, dtype=torch.bool), sectors, cfg)
        edges.append(ei + b * n)
        attrs.append(ea)
    s = n * days
    # The trainer's layout: one history per stock over the consecutive days plus context.
    stock, day = torch.arange(n).repeat(days), torch.arange(days).repeat_interleave(n)
    batch = DayBatch(seq=torch.randn(n, days + 2 * args.lookback - 2, args.features), seq_row=stock,
                     seq_end=2 * args.lookback - 2 + day, lookback=args.lookback, day=day,
                     day_index=torch.arange(days), stock=stock, targets=torch.randn(s, args.horizons),
                     edge_index=torch.cat(edges, 1), edge_attr=torch.cat(attrs))
    # FAN precomputed, as the trainer does once per run (atft_core.nn.fan.precompute_fan).
    residual, summary = FrequencyAdaptiveNorm(cfg.fan_top_k)(batch.seq, args.lookback)
    batch.fan_seq, batch.fan_key = residual, (args.lookback, cfg.fan_top_k)
    batch.fan_summary = summary[batch.seq_row, batch.seq_end - args.lookback + 1]
    return batch


def time_graph(args: argparse.Namespace, cfg, reps: int = 10) -> list[float]:
    """Seconds of each of `reps` day-graph builds (after one warm-up)."""
    import torch
    from atft_core.graph import build_graph
    n = args.stocks
    sectors = torch.randint(0, 33, (n,))
    returns = [0.01 * torch.randn(args.graph_window, 33)[:, sectors] + 0.02 * torch.randn(args.graph_window, n)
               for _ in range(reps + 1)]
    valid = torch.ones(n, dtype=torch.bool)
    build_graph(returns[0], valid, sectors, cfg)
    times = []
    for r in returns[1:]:
        t0 = time.perf_counter()
        build_graph(r, valid, sectors, cfg)
        times.append(time.perf_counter() - t0)
    return times


def time_batching(args: argparse.Namespace, cfg, n_days: int = 120) -> float:
    """Seconds to gather one batch of `args.days` days (graphs already cached) from a panel."""
    import numpy as np
    import torch
    from atft_core.batching import make_day_batch
    from atft_core.data.panel import Panel
    from atft_core.graph import GraphCache
    n = args.stocks
    valid = torch.rand(n_days, n) > 0.05
    panel = Panel(dates=np.datetime64("2020-01-01") + np.arange(n_days), codes=[str(i) for i in range(n)],
                  feature_names=tuple(f"feat_{i}" for i in range(args.features)),
                  features=torch.randn(n_days, n, args.features) * valid[..., None], valid=valid,
                  targets=torch.randn(n_days, n, args.horizons), returns=0.02 * torch.randn(n_days, n) * valid,
                  sectors=torch.randint(0, 33, (n,)), horizons=tuple(range(1, args.horizons + 1)),
                  fingerprint="bench")
    cache = GraphCache(panel.returns, panel.valid, panel.sectors, cfg)
    days = torch.arange(args.lookback, n_days)
    for t in days.tolist():
        cache.for_day(t)
    batches = [days[i:i + args.days] for i in range(0, len(days) - args.days, args.days)]
    t0 = time.perf_counter()
    for b in batches:
        make_day_batch(panel, b, args.lookback, cache, "cpu")
    return (time.perf_counter() - t0) / len(batches)


def time_model(args: argparse.Namespace, cfg, batch, bf16: bool = False) -> tuple[list[float], int]:
    """Seconds of each timed step (after one warm-up) and the parameter count."""
    import torch
    from atft_core.model import ATFTGATFAN
    model = ATFTGATFAN(cfg, args.features, args.horizons)
    model.train()
    opt = torch.optim.AdamW(model.parameters())

    def step() -> None:
        with torch.autocast(batch.seq.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(batch)
        loss = (out.point - batch.targets).square().mean() + out.quantiles.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times, model.count_parameters()


def run_child(args: argparse.Namespace) -> None:
    import torch
    from atft_core.config import ModelConfig
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tuned = all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())
    print(f"== allocator: {'tuned (MALLOC_*_THRESHOLD_=1e9)' if tuned else 'glibc default'}")
    print(machine_line(args.threads))
    base = ModelConfig(graph_top_k=args.graph_top_k, graph_corr_window=args.graph_window)
    graph = [1e3 * t for t in time_graph(args, base)]
    print(f"graph build ({args.stocks} stocks, window {args.graph_window}, top-k {args.graph_top_k}, "
          f"sector edges {base.graph_max_sector_edges}): {statistics.median(graph):.1f} ms/day "
          f"(min / max {min(graph):.1f} / {max(graph):.1f}, n={len(graph)})")
    print(f"make_day_batch ({args.days} days, graphs cached): {1e3 * time_batching(args, base):.1f} ms/batch")
    batch = make_inputs(args, base)
    rows = batch.n_rows
    print(f"batch: {args.days} days x {args.stocks} stocks = {rows} rows, lookback {args.lookback}, "
          f"{args.features} features, {batch.edge_index.shape[1]} edges")
    for hidden in args.hidden:
        for use_gat in (False, True):
            cfg = ModelConfig(hidden_size=hidden, use_gat=use_gat, graph_top_k=args.graph_top_k,
                              graph_corr_window=args.graph_window)
            for bf16 in (False, True) if args.bf16 else (False,):
                times, n_params = time_model(args, cfg, batch, bf16)
                # The median resists the bursts of other processes on a shared machine.
                seconds = statistics.median(times)
                print(f"hidden {hidden:4d} gat {'on ' if use_gat else 'off'}{' bf16' if bf16 else ''}: "
                      f"{seconds * 1e3:8.1f} ms/step fwd+bwd+adamw (min / max {min(times) * 1e3:.1f} / "
                      f"{max(times) * 1e3:.1f}, n={len(times)}), {rows / seconds:9.0f} stock-days/s at the median "
                      f"({n_params} params)", flush=True)


def _without_option(argv: list[str], name: str) -> list[str]:
    """argv minus `name VALUE` / `name=VALUE`: the child gets its allocator from the environment."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    settings = {"default": {}, "tuned": MALLOC_ENV}
    chosen = ["default", "tuned"] if args.malloc == "both" else [args.malloc]
    forwarded = _without_option(argv, "--malloc")
    for name in chosen:
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
        env.update(settings[name])
        subprocess.run([sys.executable, __file__, "--child", *forwarded], env=env, check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
