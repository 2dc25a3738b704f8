"""Throughput of ATFT-GAT-FAN forward+backward and of the per-day graph build, on this machine.

    python bench/bench_model.py                 # both allocator settings, hidden 64 and 256
    python bench/bench_model.py --hidden 64 --iters 5

Measures stock-days per second for a batch of `--days` whole days x `--stocks` stocks x
`--lookback` x `--features` (phase 3: FAN on, GAT on or off), and the time to build one day's
graph. glibc's allocator maps/unmaps the large buffers of PyG message passing on every call;
with MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ raised it keeps them, which DESIGN.md
measured at ~2x for the GAT. The bench re-runs itself in a child process with and without those
variables (they only take effect at process start) and prints both.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

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
    ap.add_argument("--iters", type=int, default=5, help="timed steps per setting (after 1 warm-up)")
    ap.add_argument("--graph-window", type=int, default=60)
    ap.add_argument("--graph-top-k", type=int, default=10)
    ap.add_argument("--malloc", choices=["both", "default", "tuned"], default="both",
                    help="run with the default allocator, the tuned one, or both (in child processes)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def machine_line(threads: int) -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {cpu}, {os.cpu_count()} cpus, load {load:.1f}; torch {torch.__version__}, "
            f"threads {threads}; python {platform.python_version()}")


def make_inputs(args: argparse.Namespace, cfg):
    """A synthetic batch of whole days with real graphs (factor-structured returns)."""
    import torch
    from atft_core.batching import DayBatch
    from atft_core.graph import build_graph
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
    batch = DayBatch(x=torch.randn(s, args.lookback, args.features),
                     day=torch.arange(days).repeat_interleave(n), day_index=torch.arange(days),
                     stock=torch.arange(n).repeat(days), targets=torch.randn(s, args.horizons),
                     edge_index=torch.cat(edges, 1), edge_attr=torch.cat(attrs))
    return batch


def time_graph(args: argparse.Namespace, cfg, reps: int = 10) -> float:
    import torch
    from atft_core.graph import build_graph
    n = args.stocks
    sectors = torch.randint(0, 33, (n,))
    returns = [0.01 * torch.randn(args.graph_window, 33)[:, sectors] + 0.02 * torch.randn(args.graph_window, n)
               for _ in range(reps + 1)]
    valid = torch.ones(n, dtype=torch.bool)
    build_graph(returns[0], valid, sectors, cfg)
    t0 = time.perf_counter()
    for r in returns[1:]:
        build_graph(r, valid, sectors, cfg)
    return (time.perf_counter() - t0) / reps


def time_model(args: argparse.Namespace, cfg, batch) -> tuple[float, int]:
    import torch
    from atft_core.model import ATFTGATFAN
    model = ATFTGATFAN(cfg, args.features, args.horizons)
    model.train()
    opt = torch.optim.AdamW(model.parameters())

    def step() -> None:
        out = model(batch)
        loss = (out.point - batch.targets).square().mean() + out.quantiles.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    return (time.perf_counter() - t0) / args.iters, model.count_parameters()


def run_child(args: argparse.Namespace) -> None:
    import torch
    from atft_core.config import ModelConfig
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tuned = all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())
    print(f"== allocator: {'tuned (MALLOC_*_THRESHOLD_=1e9)' if tuned else 'glibc default'}")
    print(machine_line(args.threads))
    base = ModelConfig(graph_top_k=args.graph_top_k, graph_corr_window=args.graph_window)
    print(f"graph build ({args.stocks} stocks, window {args.graph_window}, top-k {args.graph_top_k}, "
          f"sector edges {base.graph_max_sector_edges}): {1e3 * time_graph(args, base):.1f} ms/day")
    batch = make_inputs(args, base)
    rows = batch.x.shape[0]
    print(f"batch: {args.days} days x {args.stocks} stocks = {rows} rows, lookback {args.lookback}, "
          f"{args.features} features, {batch.edge_index.shape[1]} edges")
    for hidden in args.hidden:
        for use_gat in (False, True):
            cfg = ModelConfig(hidden_size=hidden, use_gat=use_gat, graph_top_k=args.graph_top_k,
                              graph_corr_window=args.graph_window)
            seconds, n_params = time_model(args, cfg, batch)
            print(f"hidden {hidden:4d} gat {'on ' if use_gat else 'off'}: {seconds * 1e3:8.1f} ms/step "
                  f"fwd+bwd+adamw, {rows / seconds:9.0f} stock-days/s ({n_params} params)", flush=True)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return
    settings = {"default": {}, "tuned": MALLOC_ENV}
    chosen = ["default", "tuned"] if args.malloc == "both" else [args.malloc]
    forwarded = [a for a in argv if not a.startswith("--malloc")]
    for name in chosen:
        env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
        env.update(settings[name])
        subprocess.run([sys.executable, __file__, "--child", *forwarded], env=env, check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
