"""Data-parallel training of one run over several processes (``runtime.devices`` > 1).

    python -m atft_core.train --data.path data/demo.parquet --runtime.devices=2 --run-dir runs/dp

The trainer the launcher (or the command above) starts is rank 0. It opens a rendezvous (a
torch TCPStore on 127.0.0.1, on a free port), starts ranks 1..N-1 as
``python -m atft_core.worker --port P --rank r --world N --parent PID`` (an argument list, never a shell, in
its own process group, so a Stop's SIGTERM reaches every rank) and hands them the effective
config and the run folder through the store. Every rank loads the panel, builds the same model
(DistributedDataParallel starts every rank from rank 0's weights) and runs the same loop:

- each step's days (``train.days_per_step`` consecutive ones) are cut into N contiguous parts,
  one per rank (`Group.part`); a rank's histories still start where the whole step's start,
  so the encoder sees the same context as in one process; each loss term is weighted by the
  rank's share of the step's rows or days (`Group.share`, loss.LossShare) and the loss scaled
  by N, and DDP averages the gradients: the update is one process's update over all the days,
  up to float rounding (tests/test_distributed.py compares the loss curves);
- whether to stop is voted every step (`Group.vote`), so a SIGTERM stops every rank at the
  same step; the logged loss terms are summed over ranks when they are read;
- only rank 0 validates and writes: status, metrics, log, checkpoints, predictions; the other
  ranks wait for its validation result (`Group.from_writer`), so early stopping and phase
  changes are decided once.

Failures. Rank 0 watches the other processes (`Watchdog`, a thread): when one dies or fails,
the run ends 'failed' with status.json's error naming the rank and why (its error message,
which a failing rank leaves in the store, or the signal that killed it); rank 0 then ends the
others. Rank 0's own pending collective fails at once with gloo; if rank 0 does not get out by
itself within FAILURE_GRACE_SECONDS (a hung NCCL collective), the watchdog records the failure
and ends the process. The other ranks watch rank 0 and exit when it is gone (if it was killed,
the run shows as crashed: its recorded pid is dead). Every collective gives up after
``runtime.collective_timeout_seconds``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from atft_core.config import RunConfig
from atft_core.loss import LossShare

WORKER_MODULE = "atft_core.worker"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""Ranks > 0 run from here, so they import this same atft_core."""
WATCH_SECONDS = 0.5
"""How often rank 0 looks at the other processes, and they at rank 0."""
FAILURE_GRACE_SECONDS = 10.0
"""After another rank died: how long rank 0's own loop may take to fail by itself (its next
collective errors) before the watchdog records the failure and ends the process."""
CONNECT_SECONDS = 120.0
"""How long a starting rank > 0 may take to reach rank 0's rendezvous (imports, panel loading)."""
EXIT_WAIT_SECONDS = 30.0
"""How long rank 0 waits for the other processes to exit at the end of the run."""


@dataclass
class Group:
    """This process's place in a data-parallel run: rank, size, device and the collectives."""

    rank: int
    world: int
    device: torch.device
    store: dist.Store
    control: Any
    """A gloo process group for host-side votes (the stop vote), whatever the main backend."""
    valid: np.ndarray | None = None
    """[D, N] validity and [D, N, H] finite targets on the host, for `share` (set by `bind`)."""
    finite: np.ndarray | None = None
    lookback: int = 1
    watchdog: "Watchdog | None" = None
    devices: list[str] = field(default_factory=list)

    @property
    def writer(self) -> bool:
        """Rank 0 writes the run folder; the others write nothing."""
        return self.rank == 0

    def bind(self, panel: Any, lookback: int) -> None:
        """Host copies of the panel masks that `share` counts rows and days from (once)."""
        self.valid = panel.valid.cpu().numpy()
        self.finite = torch.isfinite(panel.targets).cpu().numpy()
        self.lookback = lookback

    def part(self, chunk: np.ndarray) -> np.ndarray:
        """This rank's days of a step: the rank-th of N contiguous, near-equal parts."""
        return np.array_split(np.asarray(chunk), self.world)[self.rank]

    def share(self, chunk: np.ndarray) -> LossShare:
        """This rank's share of the step's valid rows (per horizon) and of its days with >= 2
        valid rows (per horizon): the weights that make the ranks' loss terms add up to the
        step's (loss.LossShare). Counted on the host from the panel's masks."""
        rows = np.zeros((self.world, self.finite.shape[2]))
        days = np.zeros_like(rows)
        for r, part in enumerate(np.array_split(np.asarray(chunk), self.world)):
            ok = self.valid[part] & (part >= self.lookback - 1)[:, None]           # [b, N]
            counts = (ok[..., None] & self.finite[part]).sum(1)                    # [b, H]
            rows[r], days[r] = counts.sum(0), (counts >= 2).sum(0)
        weights = np.stack([_fraction(rows, self.rank, self.world), _fraction(days, self.rank, self.world)])
        moved = torch.from_numpy(weights.astype(np.float32))
        if self.device.type == "cuda":
            moved = moved.pin_memory().to(self.device, non_blocking=True)
        return LossShare(rows=moved[0], days=moved[1])

    def reduce(self, tensor: torch.Tensor) -> None:
        """Sum `tensor` over the ranks, in place (on the training device)."""
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def vote(self, stop: bool) -> bool:
        """True when any rank wants to stop (a host-side collective, no device sync)."""
        flag = torch.tensor([1 if stop else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.control)
        return bool(flag.item())

    def from_writer(self, compute: Callable[[], Any]) -> Any:
        """`compute()` on rank 0, its result on every rank (the others wait for it)."""
        box = [compute() if self.writer else None]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def describe(self) -> str:
        """The devices of the run, e.g. 'cuda:0, cuda:1 (nccl)' or 'cpu x 2 processes (gloo)'."""
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        if self.device.type == "cpu":
            return f"cpu x {self.world} processes ({backend})"
        return f"{', '.join(self.devices)} ({backend})"

    def pids(self) -> dict[str, int]:
        """Each rank's process id (rank 0 only knows them all)."""
        others = self.watchdog.pids if self.watchdog is not None else {}
        return {str(rank): pid for rank, pid in {0: os.getpid(), **others}.items()}

    def failure(self) -> str | None:
        """Why another rank ended the run, if one did (rank 0 only; waits briefly for a dying one)."""
        return self.watchdog.reason(wait=True) if self.watchdog is not None else None

    def close(self, abort: bool = False) -> None:
        """End the group: rank 0 waits for the others to exit (kills them with `abort`)."""
        if self.watchdog is not None:
            self.watchdog.finish(abort)
        if dist.is_initialized():
            dist.destroy_process_group()


def data_parallel(model: torch.nn.Module, group: Group | None) -> dict[str, Any]:
    """TrainStep's `forward` and `loss_scale` for a data-parallel run ({} in one process)."""
    if group is None:
        return {}
    return {"forward": PhaseForward(model), "loss_scale": float(group.world)}


class PhaseForward:
    """The model's forward through DistributedDataParallel, which averages the gradients over
    the ranks during backward. One wrapper per set of active blocks: a phase that leaves FAN or
    the GAT off needs DDP to look for unused parameters every step (find_unused_parameters),
    the phases with everything on do not. Every rank makes them in the same order (a
    collective: rank 0's weights are broadcast)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._wrapped: dict[tuple[bool, bool], torch.nn.Module] = {}

    def __call__(self, batch: Any) -> Any:
        key = (self.model.fan_active or self.model.fan is None, self.model.gat_active or self.model.graph is None)
        if key not in self._wrapped:
            self._wrapped[key] = torch.nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=not all(key))
        return self._wrapped[key](batch)


class QuietStatus:
    """The status of a rank > 0: every update is dropped (rank 0 reports the run); `get`
    answers the default."""

    def get(self, key: str, default: Any = None) -> Any:
        return default

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class QuietMetrics:
    """The metrics writer of a rank > 0: logs nothing (rank 0 logs the summed terms)."""

    def log(self, **_: Any) -> None:
        return None


def _fraction(counts: np.ndarray, rank: int, world: int) -> np.ndarray:
    """counts [ranks, H] -> this rank's share per horizon (1 / world where no rank has any)."""
    total = counts.sum(0)
    return np.where(total > 0, counts[rank] / np.maximum(total, 1), 1.0 / world)


def rank_device(cfg: RunConfig, rank: int) -> torch.device:
    """cuda:rank on a CUDA run (of the visible GPUs), else the CPU."""
    return torch.device("cuda", rank) if cfg.runtime.device.startswith("cuda") else torch.device("cpu")


def collective_timeout(cfg: RunConfig) -> dt.timedelta:
    """How long a rank waits in a collective (runtime.collective_timeout_seconds)."""
    return dt.timedelta(seconds=cfg.runtime.collective_timeout_seconds)


def join(store: dist.Store, rank: int, world: int, cfg: RunConfig) -> Group:
    """Join the process group as `rank` (every rank calls this; it returns once all have)."""
    device = rank_device(cfg, rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=collective_timeout(cfg))
    control = dist.new_group(backend="gloo", timeout=collective_timeout(cfg)) if backend != "gloo" else dist.group.WORLD
    return Group(rank=rank, world=world, device=device, store=store, control=control,
                 devices=[str(rank_device(cfg, r)) for r in range(world)])


def start(cfg: RunConfig, run_dir: Path, resume: bool, on_failure: Callable[[str], None]) -> Group:
    """Rank 0: open the rendezvous, start ranks 1..N-1, join them, start the watchdog.

    `on_failure(reason)` records the run as failed; the watchdog calls it when it has to end
    rank 0 itself (see the module docstring).
    """
    world = cfg.runtime.devices
    store = dist.TCPStore("127.0.0.1", 0, world_size=world, is_master=True, timeout=collective_timeout(cfg),
                          wait_for_workers=False)
    store.set("config", cfg.to_json(indent=None))
    store.set("run_dir", str(Path(run_dir).resolve()))
    store.set("resume", "1" if resume else "0")
    procs = {}
    for rank in range(1, world):
        command = [sys.executable, "-m", WORKER_MODULE, "--port", str(store.port), "--rank", str(rank),
                   "--world", str(world), "--parent", str(os.getpid())]
        procs[rank] = subprocess.Popen(command, stdin=subprocess.DEVNULL, cwd=PACKAGE_ROOT, close_fds=True)
    watchdog = Watchdog(procs, store, on_failure)
    watchdog.start()
    try:
        group = join(store, 0, world, cfg)
    except BaseException:
        watchdog.finish(abort=True)
        raise
    group.watchdog = watchdog
    return group


def connect(port: int, rank: int, world: int) -> tuple[dist.Store, RunConfig, Path, bool]:
    """Ranks > 0: reach rank 0's rendezvous; returns (store, effective config, run folder, resume)."""
    store = dist.TCPStore("127.0.0.1", port, world_size=world, is_master=False,
                          timeout=dt.timedelta(seconds=CONNECT_SECONDS))
    cfg = RunConfig.from_dict(json.loads(store.get("config").decode()))
    store.set_timeout(collective_timeout(cfg))
    return store, cfg, Path(store.get("run_dir").decode()), store.get("resume") == b"1"


def report_error(store: dist.Store, rank: int, message: str) -> None:
    """A rank > 0 leaves why it failed for rank 0 to record (best effort: rank 0 may be gone)."""
    try:
        store.set(f"error/{rank}", message[:2000])
    except Exception:  # noqa: BLE001 - the rendezvous is gone with rank 0; nothing to tell
        pass


def report_done(store: dist.Store, rank: int, outcome: str) -> None:
    """A rank > 0 ended its loop as every rank did (completed, stopped, or failed the same way:
    a non-finite loss, degenerate predictions); its exit is then no failure of its own."""
    store.set(f"done/{rank}", outcome[:2000])


def watch_parent(parent: int) -> None:
    """Ranks > 0: exit when rank 0 (`parent`, the pid that started this process) is gone, even
    from inside a hung collective; at once if it is gone already."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="watch-rank-0", daemon=True).start()


class Watchdog:
    """Rank 0's watch over the other ranks' processes (see the module docstring)."""

    def __init__(self, procs: dict[int, subprocess.Popen], store: dist.Store,
                 on_failure: Callable[[str], None]) -> None:
        self.procs, self.store, self.on_failure = procs, store, on_failure
        self._reason: str | None = None
        self._ending = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch-ranks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def pids(self) -> dict[int, int]:
        return {rank: proc.pid for rank, proc in self.procs.items()}

    def reason(self, wait: bool = False) -> str | None:
        """Why a rank ended the run (None if none did); `wait`: give a dying one a moment."""
        deadline = time.monotonic() + (2.0 if wait else 0.0)
        while True:
            self._reason = self._reason or self._look()
            if self._reason or time.monotonic() >= deadline:
                return self._reason
            time.sleep(0.05)

    def _look(self) -> str | None:
        for rank, proc in self.procs.items():
            code = proc.poll()
            if code is None or (code == 0 and self._flag(f"done/{rank}")):
                continue
            error = self._flag(f"error/{rank}")
            why = (f"failed: {error}" if error else
                   f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}")
            return f"rank {rank} of {len(self.procs) + 1} (pid {proc.pid}) {why}"
        return None

    def _flag(self, key: str) -> str | None:
        try:
            return self.store.get(key).decode() if self.store.check([key]) else None
        except Exception:  # noqa: BLE001 - the store is closing
            return None

    def _run(self) -> None:
        while not self._ending.wait(WATCH_SECONDS):
            reason = self.reason()
            if reason is None:
                continue
            self._kill_all()
            if not self._ending.wait(FAILURE_GRACE_SECONDS):   # rank 0 did not end by itself
                self.on_failure(reason)
                os._exit(1)
            return

    def finish(self, abort: bool) -> None:
        """Stop watching; wait for the ranks to exit (kill them first with `abort`)."""
        self._ending.set()
        if abort:
            self._kill_all()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=EXIT_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
