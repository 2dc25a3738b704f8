"""A rank > 0 of a data-parallel run (atft_core/distributed.py); rank 0 starts it.

    python -m atft_core.worker --port PORT --rank R --world N --parent PID

It reads the effective config and the run folder from rank 0's rendezvous, trains its part of
every step and writes nothing: rank 0 records the run. Exit code 0 when its loop ended as every
rank's did, 1 when it failed on its own (the reason is left for rank 0), 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from atft_core import distributed
from atft_core.allocator import keep_freed_memory
from atft_core.step import TrainingFailed
from atft_core.train import train_rank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m atft_core.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True, help="rank 0's rendezvous port on 127.0.0.1")
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="rank 0's pid: this process exits when it is gone")
    args = parser.parse_args(argv)
    if not 0 < args.rank < args.world:
        print(f"error: --rank must be in 1..{args.world - 1}", file=sys.stderr)
        return 2
    keep_freed_memory()
    distributed.watch_parent(args.parent)
    store, cfg, run_dir, resume = distributed.connect(args.port, args.rank, args.world)
    try:
        outcome = train_rank(cfg, run_dir, resume, store, args.rank, args.world)
    except TrainingFailed as exc:  # every rank fails alike; rank 0 records it
        outcome = f"failed: {exc}"
    except Exception as exc:  # noqa: BLE001 - whatever it was, rank 0 names it in status.json
        traceback.print_exc()
        distributed.report_error(store, args.rank, f"{type(exc).__name__}: {exc}")
        return 1
    distributed.report_done(store, args.rank, outcome)
    return 0


if __name__ == "__main__":
    sys.exit(main())
