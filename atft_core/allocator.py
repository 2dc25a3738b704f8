"""glibc allocator settings for training: keep freed buffers for reuse instead of unmapping them.

PyG's message passing allocates and frees tensors of tens of MB per GAT layer and step. With
glibc's defaults each such buffer is a fresh mmap that is unmapped on free, so every step pays
the page faults of new memory again. Raising the mmap and trim thresholds makes glibc serve them
from the heap and keep them there. DESIGN.md measured the GAT's forward+backward about 2x faster
for it; on the real-data graph here (943 stocks x 8 days, ~28 edges per stock) it was 3x
(docs/benchmarks.md). These are the settings of the environment variables
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``, applied at run time with ``mallopt`` so
that every entry point gets them (the CLI, the app's launcher, the benches), not only a process
started with that environment. The cost: freed memory stays with the process until it exits,
so the peak RSS is higher. A real-data run at hidden 256 (phases 0 and 2, 400 days, 2 threads)
peaked at 10.4 GiB with these settings against 6.2 GiB without, and its GAT epoch took 100 s
against 195 s, with identical metrics (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter numbers (malloc.h)."""
THRESHOLD_BYTES = 1_000_000_000
"""Both thresholds: no buffer a training step allocates comes near it."""


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); False without glibc.

    Call it early in an entry point: it changes how every later allocation is served.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES)) and bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # only glibc has it (musl, macOS do not)
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc
