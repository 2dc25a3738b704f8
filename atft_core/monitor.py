"""The machine's load over the last minutes: CPU, memory and GPUs, sampled in a background
thread (the System page shows it as history, not only a snapshot). No Streamlit here.

    history = MachineHistory()      # probes as in atft_core.system (replaceable in tests)
    history.start()                 # a daemon thread samples every `interval` seconds
    history.frame()                 # time, chart, series, value (long format, for charts)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import psutil

from atft_core.system import GiB, Probes, no_gpu_reason

SAMPLE_SECONDS = 2.0
HISTORY_SECONDS = 600.0
"""How far back the history goes (ten minutes)."""
CHARTS = ("cpu", "memory", "gpu", "gpu memory")
"""The `chart` column's values: CPU load %, memory used GiB, GPU utilisation %, GPU memory used GiB."""


@dataclass(frozen=True)
class Sample:
    """One measurement: CPU load over the last interval, memory and every GPU."""

    time: float
    cpu_percent: float
    ram_used: int
    ram_total: int
    gpus: tuple[tuple[int, int | None, int, int], ...] = ()
    """(index, utilisation % or None, memory used, memory total) per GPU."""


class MachineHistory:
    """Samples the machine every `interval` seconds, keeping the last `keep_seconds`.

    GPUs are asked through `probes.gpus` (NVML); when that fails (no driver), the reason is
    kept in `gpu_note` (plain words, as MachineStatus.gpu_note) and `gpu_error` (NVML's own
    text), and GPUs are not asked again.
    """

    def __init__(self, interval: float = SAMPLE_SECONDS, keep_seconds: float = HISTORY_SECONDS,
                 probes: Probes | None = None, cpu_percent=psutil.cpu_percent) -> None:
        self.interval = interval
        self.probes = probes or Probes()
        self.gpu_note = ""
        self.gpu_error = ""
        self._cpu_percent = cpu_percent
        self._samples: deque[Sample] = deque(maxlen=max(2, int(keep_seconds / interval) + 1))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu_percent(None)  # psutil measures from the previous call: start the clock

    def sample(self) -> Sample:
        """Measure now and keep the sample."""
        total, available = self.probes.ram()
        gpus: tuple = ()
        if not self.gpu_error:
            try:
                gpus = tuple((g.index, g.utilization, g.memory_total - g.memory_free, g.memory_total)
                             for g in self.probes.gpus())
            except Exception as exc:  # noqa: BLE001 - any NVML failure means "no usable GPU"
                self.gpu_note, self.gpu_error = no_gpu_reason(exc), f"{type(exc).__name__}: {exc}"
        found = Sample(time.time(), float(self._cpu_percent(None)), int(total - available), int(total), gpus)
        with self._lock:
            self._samples.append(found)
        return found

    def start(self) -> "MachineHistory":
        """Sample now, then every `interval` seconds in a daemon thread (once; later calls do nothing)."""
        if self._thread is None:
            self.sample()
            self._thread = threading.Thread(target=self._run, name="machine-history", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def frame(self) -> pl.DataFrame:
        """Long table of the history: time (datetime), chart (one of CHARTS), series, value."""
        rows = []
        for s in self.samples():
            at = datetime.fromtimestamp(s.time)   # local time, as the clock on the wall
            rows.append((at, "cpu", "CPU load (all cores)", s.cpu_percent))
            rows.append((at, "memory", "memory used", s.ram_used / GiB))
            for index, util, used, _ in s.gpus:
                if util is not None:
                    rows.append((at, "gpu", f"GPU {index}", float(util)))
                rows.append((at, "gpu memory", f"GPU {index}", used / GiB))
        return pl.DataFrame(rows, schema={"time": pl.Datetime("ms"), "chart": pl.Utf8, "series": pl.Utf8,
                                          "value": pl.Float64}, orient="row")
