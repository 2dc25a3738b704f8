"""Counting what makes the host wait for the device ("syncs") in a piece of code, on any device.

On a GPU the host queues kernels and runs ahead; it has to stop and wait whenever it needs a
value that the device computes. The training step is meant to need none (atft_core.step), so
the host can prepare the next step while the device still runs this one. This module finds the
places that would wait, also on a CPU where nothing actually waits, so a test can count them:

- ``reads``: a device value read by the host: ``item()``, ``float()/int()/bool()`` of a
  tensor, ``tolist()``, ``numpy()``, ``cpu()``, ``torch.equal``, and the aten ops they and
  library code use underneath (``_local_scalar_dense``);
- ``dynamic``: ops whose output size depends on the values, which the host must know before
  it can go on: ``nonzero``, ``unique``, ``masked_select``, indexing with a boolean mask,
  ``repeat_interleave`` without ``output_size``;
- ``uploads``: tensors made from host data (``torch.tensor``): on a GPU a copy to the device,
  which waits for it unless it is pinned and asynchronous (the batcher's one copy is). Listed
  apart from the syncs because on a CPU they cost nothing and on a GPU it depends.

On a CPU every tensor counts as a device tensor, so the count is strict: a read of a tensor
that would live on the host anyway also counts, except those that ``host()`` lists (such as
the optimiser's step counters, which PyTorch keeps on the host: `optimizer_host_tensors`). With
``cuda=True`` (on a GPU) the CUDA runtime's own count is added: ``torch.cuda.set_sync_debug_mode``
warns at each synchronizing call.

    with count_syncs(host=lambda: optimizer_host_tensors(optimizer)) as counted:
        trainer.train_epoch(...)
    counted.syncs, counted.describe()
"""

from __future__ import annotations

import contextlib
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

_READ_METHODS = frozenset({"tolist", "numpy", "cpu", "__array__", "__format__"})
"""Tensor methods that hand a device value to the host without an aten op (``item()``,
``float()`` and friends show up below as ``_local_scalar_dense``, which is what they call)."""
_READ_OPS = frozenset({"aten._local_scalar_dense.default", "aten.equal.default", "aten.allclose.default",
                       "aten.is_nonzero.default"})
_DYNAMIC_OPS = frozenset({"aten.nonzero.default", "aten._unique2.default", "aten.unique_dim.default",
                          "aten.unique_consecutive.default", "aten.masked_select.default"})
_INDEX_OPS = frozenset({"aten.index.Tensor", "aten.index_put.default", "aten.index_put_.default",
                        "aten._index_put_impl_.default"})
_UPLOAD_OPS = frozenset({"aten.lift_fresh.default", "aten.lift_fresh_copy.default"})
_CUDA_SYNC_WARNING = "synchronizing CUDA operation"


@dataclass
class SyncCount:
    """What `count_syncs` saw, by operation name."""

    reads: Counter = field(default_factory=Counter)
    dynamic: Counter = field(default_factory=Counter)
    uploads: Counter = field(default_factory=Counter)
    cuda_syncs: int | None = None
    """Synchronizing calls the CUDA runtime reported (None unless counted on a GPU)."""

    @property
    def syncs(self) -> int:
        """Host reads plus data-dependent sizes: the places where the host waits."""
        return sum(self.reads.values()) + sum(self.dynamic.values())

    def describe(self) -> str:
        parts = [f"{self.syncs} syncs"]
        for name, counter in (("reads", self.reads), ("dynamic sizes", self.dynamic), ("uploads", self.uploads)):
            if counter:
                parts.append(f"{name}: " + ", ".join(f"{op} x{n}" for op, n in counter.most_common()))
        if self.cuda_syncs is not None:
            parts.append(f"CUDA-reported syncs: {self.cuda_syncs}")
        return "; ".join(parts)


class _Methods(TorchFunctionMode):
    def __init__(self, counted: SyncCount, host: "_Host") -> None:
        super().__init__()
        self.counted, self.host = counted, host

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in _READ_METHODS and not _on_host(args, self.host):
            self.counted.reads[name] += 1
        return func(*args, **(kwargs or {}))


class _Ops(TorchDispatchMode):
    def __init__(self, counted: SyncCount, host: "_Host") -> None:
        super().__init__()
        self.counted, self.host = counted, host

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = str(func)
        if name in _READ_OPS and _on_host(args, self.host):
            pass
        elif name in _READ_OPS:
            self.counted.reads[name] += 1
        elif name in _DYNAMIC_OPS or (name == "aten.repeat_interleave.Tensor"
                                      and (kwargs or {}).get("output_size") is None):
            self.counted.dynamic[name] += 1
        elif name in _INDEX_OPS and _has_mask(args[1]):
            self.counted.dynamic[f"{name} (boolean mask)"] += 1
        elif name in _UPLOAD_OPS:
            self.counted.uploads[name] += 1
        return func(*args, **(kwargs or {}))


_Host = Callable[[], Iterable[torch.Tensor]]


def _on_host(args: tuple, host: _Host) -> bool:
    """Whether the op reads one of the tensors that live on the host by design."""
    if not args or not isinstance(args[0], torch.Tensor) or args[0].device.type != "cpu":
        return False
    return any(args[0].data_ptr() == t.data_ptr() for t in host())


def optimizer_host_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimiser's per-parameter step counters that PyTorch keeps on the host (Adam's and
    AdamW's unless `capturable`): reading them never waits for a device."""
    return [value for state in optimizer.state.values() for key, value in state.items()
            if key == "step" and isinstance(value, torch.Tensor) and value.device.type == "cpu"]


def _has_mask(indices: Any) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)


@contextlib.contextmanager
def count_syncs(cuda: bool = False, host: _Host = tuple) -> Iterator[SyncCount]:
    """Count the syncs of the code run inside (see the module docstring); reads of the tensors
    that `host()` lists when the read happens are not counted. Slows the code down: for tests
    and benchmarks, never for training."""
    counted = SyncCount(cuda_syncs=0 if cuda else None)
    on_host = host
    with contextlib.ExitStack() as stack:
        if cuda:
            caught = stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("always")
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
            stack.callback(torch.cuda.set_sync_debug_mode, previous)
        stack.enter_context(_Methods(counted, on_host))
        stack.enter_context(_Ops(counted, on_host))
        yield counted
        if cuda:
            counted.cuda_syncs = sum(_CUDA_SYNC_WARNING in str(w.message) for w in caught)
