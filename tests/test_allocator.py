"""keep_freed_memory: after it, a large freed buffer stays with the process for reuse (glibc)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from atft_core.allocator import _glibc

PROBE = """
import ctypes, sys, psutil
from atft_core.allocator import _glibc, keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = _glibc()
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 256 * 1024 * 1024
before = psutil.Process().memory_info().rss
buf = libc.malloc(size)
ctypes.memset(buf, 1, size)
libc.free(buf)
print((psutil.Process().memory_info().rss - before) / size)
"""


def _kept_share(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(_glibc() is None, reason="mallopt thresholds exist only in glibc")
def test_freed_buffer_is_kept_only_with_the_setting():
    assert _kept_share("default") < 0.1  # glibc mmaps a 256 MB block and unmaps it on free
    assert _kept_share("keep") > 0.9     # served from the heap and kept there


def test_entry_points_apply_it(monkeypatch, tmp_path):
    from atft_core import predict, train
    calls = []
    monkeypatch.setattr(train, "keep_freed_memory", lambda: calls.append("train"))
    monkeypatch.setattr(predict, "keep_freed_memory", lambda: calls.append("predict"))
    assert train.main(["--print-config"]) == 0
    assert predict.main(["--run", str(tmp_path / "missing"), "--dataset", "d.parquet", "--out", "p.parquet"]) == 2
    assert calls == ["train", "predict"]
