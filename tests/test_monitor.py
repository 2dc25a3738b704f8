"""The machine history behind the System page: samples, GPUs, and a driver that is missing."""

from __future__ import annotations

import time

from atft_core.monitor import MachineHistory
from atft_core.system import GiB, GpuInfo, Probes


def test_history_samples_cpu_memory_and_gpus_and_keeps_the_last_minutes():
    loads = iter([0.0, 10.0, 20.0, 30.0, 40.0])
    probes = Probes(ram=lambda: (16 * GiB, 12 * GiB),
                    gpus=lambda: [GpuInfo(0, "H100", 80 * GiB, 60 * GiB, 55, [])])
    history = MachineHistory(interval=1.0, keep_seconds=2.0, probes=probes, cpu_percent=lambda _: next(loads))
    for _ in range(4):
        history.sample()
    assert [s.cpu_percent for s in history.samples()] == [20.0, 30.0, 40.0]   # three fit in 2 s at 1 s
    frame = history.frame()
    assert sorted(set(frame["chart"])) == ["cpu", "gpu", "gpu memory", "memory"]
    assert frame.filter(chart="memory")["value"].to_list() == [4.0, 4.0, 4.0]
    assert frame.filter(chart="gpu memory")["value"].to_list() == [20.0] * 3
    assert history.gpu_note == history.gpu_error == ""


def test_a_missing_driver_is_asked_once_and_said_plainly():
    calls = []

    def no_driver():
        calls.append(1)
        raise RuntimeError("NVMLError_LibraryNotFound: NVML Shared Library Not Found")

    history = MachineHistory(interval=0.05, probes=Probes(ram=lambda: (8 * GiB, 4 * GiB), gpus=no_driver)).start()
    time.sleep(0.3)
    history.stop()
    assert len(history.samples()) >= 3 and len(calls) == 1
    assert history.gpu_note == "no NVIDIA driver found" and "NVMLError" in history.gpu_error
    assert set(history.frame()["chart"]) == {"cpu", "memory"}
