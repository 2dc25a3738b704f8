"""The machine (GPUs, disk, RAM, CPUs) and the pre-flight checklist; `python -m atft_core.system`.

Library API::

    machine_status(probes=None, paths=("runs",)) -> MachineStatus
    preflight(cfg, runs_dir, probes=None) -> list[CheckItem]     # verdict 'pass'|'warn'|'fail'
    verdict(items) -> 'pass' | 'warn' | 'fail'

No GPU, or no NVIDIA driver, is a normal state: the checklist says training will use the CPU.
Every probe is a field of `Probes`, so tests can fake a full disk or a busy GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from atft_core.config import ConfigError, RunConfig, build_config, feature_index, parse_overrides, resolve
from atft_core.data.errors import DataError
from atft_core.duration import earlier_runs, estimate_duration, format_duration, optimized_hint
from atft_core.entry import run_cli
from atft_core.plan import DayPlan, plan_days
from atft_core.run_size import CHECKPOINT_COPIES, checkpoint_bytes, run_disk_bytes
from atft_core.runs.store import query_metrics

GiB = 1024**3
DISK_SAFETY_FACTOR = 2.0
"""Free disk must cover this many times what a run writes, or the check fails."""
LOW_DISK_BYTES = 2 * GiB
"""Free disk left after a run below this is a warning."""
MEMORY_WARN_FRACTION = 0.5
"""A panel taking more than this share of free device memory leaves little for activations."""
BUSY_GPU_UTILIZATION = 10
"""GPU utilisation (%) above which the GPU counts as busy."""
PEAK_RSS_METRIC = "memory/peak_rss_gib"
"""Logged every epoch: the trainer process's peak resident memory so far (panel, activations and
what the allocator keeps, atft_core/allocator.py), GiB."""
PEAK_GPU_METRIC = "memory/peak_gpu_gib"
"""Logged every epoch on a GPU: the CUDA caching allocator's peak allocation so far, GiB."""
MEASURED_MEMORY_WARN_FRACTION = 0.8
"""A measured peak above this share of the memory free now is a warning."""
TRAINER_BASE_BYTES = int(0.75 * GiB)
"""A trainer's resident memory beside its panel (Python, torch, polars, PyG and their buffers):
a demo run of 60 stocks at hidden size 8 peaks at 0.67 GiB on this project's 2-core CPU box."""
SHAPE_FREE_MODEL_FIELDS = frozenset({"encoder_dropout", "gat_dropout", "gate_init", "gate_learnable", "ridge_alpha"})
"""ModelConfig fields that change no tensor size: runs differing only in these share a memory peak."""


@dataclass
class GpuInfo:
    """One GPU as NVML reports it."""

    index: int
    name: str
    memory_total: int
    memory_free: int
    utilization: int | None = None
    processes: list[dict[str, Any]] = field(default_factory=list)
    """Running compute processes: {"pid", "used_memory"}."""

    @property
    def busy(self) -> bool:
        return bool(self.processes) or (self.utilization or 0) > BUSY_GPU_UTILIZATION


def _nvml_gpus() -> list[GpuInfo]:
    """GPUs from nvidia-ml-py; raises (pynvml.NVMLError) when there is no driver."""
    import pynvml

    pynvml.nvmlInit()
    try:
        return [_nvml_gpu(pynvml, i) for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()


def _nvml_gpu(pynvml: Any, index: int) -> GpuInfo:
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    name = pynvml.nvmlDeviceGetName(handle)
    mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
    try:
        util = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except pynvml.NVMLError:
        util = None
    try:
        procs = [{"pid": p.pid, "used_memory": p.usedGpuMemory}
                 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]
    except pynvml.NVMLError:
        procs = []
    return GpuInfo(index, name.decode() if isinstance(name, bytes) else str(name),
                   int(mem.total), int(mem.free), util, procs)


def _disk_free(path: Path | str) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _ram() -> tuple[int, int]:
    mem = psutil.virtual_memory()
    return int(mem.total), int(mem.available)


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16; Linux /proc/cpuinfo).

    Only then is CPU bf16 autocast faster than fp32; elsewhere it is emulated and slower.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def resolve_here(cfg: RunConfig) -> RunConfig:
    """`config.resolve` with this machine's facts (CUDA, CPU count, native CPU bf16)."""
    return resolve(cfg, cuda_available=_cuda_available(), cpu_count=psutil.cpu_count() or 1,
                   cpu_bf16=cpu_has_native_bf16())


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@dataclass
class Probes:
    """How the machine is measured; replace any field to fake a state in tests."""

    disk_free: Callable[[Path | str], int] = _disk_free
    ram: Callable[[], tuple[int, int]] = _ram
    """(total, available) bytes."""
    gpus: Callable[[], list[GpuInfo]] = _nvml_gpus
    """May raise when there is no driver: that means no GPU."""
    cpu_count: Callable[[], int] = lambda: psutil.cpu_count() or 1
    cuda_available: Callable[[], bool] = _cuda_available
    """Whether this torch build can use CUDA (a CPU-only torch cannot, GPU or not)."""
    cpu_bf16: Callable[[], bool] = cpu_has_native_bf16


@dataclass
class MachineStatus:
    """A snapshot of the machine."""

    gpus: list[GpuInfo]
    gpu_note: str
    """Why there is no GPU, in plain words ('' when NVML answered), e.g. "no NVIDIA driver found"."""
    cuda_available: bool
    ram_total: int
    ram_available: int
    cpu_count: int
    disk_free: dict[str, int]
    cpu_bf16: bool = False
    """The CPU computes bf16 natively (optimized mode then trains on the CPU with bf16 autocast)."""
    gpu_error: str = ""
    """NVML's own error behind `gpu_note` (e.g. "NVMLError_LibraryNotFound: NVML Shared Library Not
    Found"), for a detail view."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """Human-readable lines."""
        bf16 = ", native bf16" if self.cpu_bf16 else ""
        lines = [f"CPU: {self.cpu_count} cores{bf16}; RAM {_gib(self.ram_available)} free of {_gib(self.ram_total)}"]
        if not self.gpus:
            lines.append(f"GPU: none ({self.gpu_note or 'no device'}); training will use the CPU")
        for g in self.gpus:
            procs = ", ".join(f"pid {p['pid']}" for p in g.processes) or "no processes"
            lines.append(f"GPU {g.index}: {g.name}, {_gib(g.memory_free)} free of {_gib(g.memory_total)}, "
                         f"utilisation {g.utilization if g.utilization is not None else '?'}%, {procs}")
        lines += [f"disk: {_gib(free)} free at {path}" for path, free in self.disk_free.items()]
        return "\n".join(lines)


def _gib(n: float) -> str:
    """Bytes as GiB, or MiB below 1 GiB (a tiny panel is not '0.0 GiB')."""
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / 1024**2:.1f} MiB"


def machine_status(probes: Probes | None = None, paths: Sequence[Path | str] = ("runs",)) -> MachineStatus:
    """Probe GPUs, RAM, CPUs and free disk at `paths`."""
    probes = probes or Probes()
    try:
        gpus, note, error = list(probes.gpus()), "", ""
    except Exception as exc:  # noqa: BLE001 - any NVML failure just means "no usable GPU"
        gpus, note, error = [], no_gpu_reason(exc), f"{type(exc).__name__}: {exc}"
    try:
        cuda = bool(probes.cuda_available())
    except Exception:  # noqa: BLE001
        cuda = False
    total, available = probes.ram()
    return MachineStatus(gpus, note, cuda, total, available, int(probes.cpu_count()),
                         {str(p): int(probes.disk_free(p)) for p in paths}, bool(probes.cpu_bf16()), error)


NVML_REASONS = (
    (("LibraryNotFound", "Shared Library Not Found"), "no NVIDIA driver found"),
    (("DriverNotLoaded", "Driver Not Loaded"), "the NVIDIA driver is not loaded"),
    (("NoPermission", "Insufficient Permissions"), "no permission to query the NVIDIA driver"),
    (("No module named",), "nvidia-ml-py is not installed"),
)
"""NVML's errors (class name or message) in plain words."""


def no_gpu_reason(exc: BaseException) -> str:
    """Why NVML found no GPU, as a user reads it; the raw error stays in MachineStatus.gpu_error."""
    raw = f"{type(exc).__name__}: {exc}"
    return next((words for marks, words in NVML_REASONS if any(m in raw for m in marks)),
                "the NVIDIA driver did not answer")


# ---------------------------------------------------------------------------------------------
# Pre-flight checklist


@dataclass
class CheckItem:
    """One line of the checklist."""

    name: str
    verdict: str
    """'pass', 'warn' or 'fail'."""
    detail: str
    setting: bool = False
    """The item fails because a setting cannot work with this dataset or machine (not because the
    machine lacks room): the command lines then exit 2, as for any other bad setting."""
    technical: str = ""
    """Raw facts behind `detail` for a detail view (e.g. the NVIDIA driver's own error)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Dataset:
    n_stocks: int
    n_days: int
    n_features: int
    has_sector: bool
    warnings: list[str]
    feature_names: tuple[str, ...] = ()
    summary: Any = None
    """The data helper's DatasetSummary."""


def verdict(items: Sequence[CheckItem]) -> str:
    """'fail' if any item fails, else 'warn' if any warns, else 'pass'."""
    found = {i.verdict for i in items}
    return "fail" if "fail" in found else "warn" if "warn" in found else "pass"


def _dataset_summary(path: str) -> _Dataset:
    """The data helper's validation (raises DataError / OSError for a bad or missing file)."""
    from atft_core.data.validate import validate_dataset

    s = validate_dataset(path)
    return _Dataset(int(s.n_stocks), int(s.n_days), int(s.n_features), bool(s.has_sector), list(s.warnings),
                    tuple(s.feature_names), s)


def _panel_bytes(cfg: RunConfig, ds: _Dataset) -> int:
    """The panel plus, for the deep model with FAN, its FAN inputs (computed once per run)."""
    from atft_core.data.panel import estimate_panel_bytes
    from atft_core.nn.fan import fan_bytes

    need = estimate_panel_bytes(ds.n_days, ds.n_stocks, ds.n_features, len(cfg.data.horizons))
    if cfg.model.kind == "atft_gat_fan" and cfg.model.fan_top_k > 0:
        need += fan_bytes(ds.n_days, ds.n_stocks, ds.n_features)
    return int(need)


def count_parameters(cfg: RunConfig, n_features: int) -> int:
    """Trainable parameters of the configured model (baselines: their coefficients)."""
    n_horizons = len(cfg.data.horizons)
    if cfg.model.kind == "ridge":
        return (n_features + 1) * n_horizons
    if cfg.model.kind != "atft_gat_fan":
        return 0
    from atft_core.model import ATFTGATFAN

    model = ATFTGATFAN(cfg.model, n_features, n_horizons)
    return sum(p.numel() for p in model.parameters())


def _check_dataset(cfg: RunConfig) -> tuple[list[CheckItem], _Dataset | None]:
    path = cfg.data.path
    if not Path(path).is_file():
        return [CheckItem("dataset", "fail", f"{path} does not exist; build it with `python -m atft_core.data`")], None
    try:
        ds = _dataset_summary(path)
    except ImportError as exc:
        return [CheckItem("dataset", "warn", f"cannot validate {path}: {exc}")], None
    except Exception as exc:  # noqa: BLE001 - DataError, unreadable parquet: all mean "invalid"
        return [CheckItem("dataset", "fail", f"{path} is invalid: {exc}")], None
    items = [CheckItem("dataset", "warn" if ds.warnings else "pass",
                       f"{ds.n_stocks} stocks x {ds.n_days} days x {ds.n_features} features"
                       + (f"; warnings: {'; '.join(ds.warnings)}" if ds.warnings else ""))]
    items.append(CheckItem("sector", "pass", "Sector33Code present: sector edges available") if ds.has_sector
                 else CheckItem("sector", "warn", "no Sector33Code column: the graph gets no same-sector edges"))
    if cfg.data.features or cfg.data.expected_feature_count or cfg.loss.neutralize or cfg.model.factor:
        items.append(_check_features(cfg, ds.feature_names, path))
    return items, ds


def _check_features(cfg: RunConfig, in_dataset: tuple[str, ...], path: str) -> CheckItem:
    """The loader's own feature selection (data.features, data.expected_feature_count), then
    loss.neutralize and model.factor among the features that will load."""
    from atft_core.data.validate import select_features

    factor = (cfg.model.factor,) if cfg.model.factor else ()
    try:
        loaded = select_features(in_dataset, cfg.data.features, cfg.data.expected_feature_count, path)
        feature_index(cfg.loss.neutralize, loaded, "loss.neutralize")
        feature_index(factor, loaded, "model.factor")
    except (DataError, ConfigError) as exc:
        return CheckItem("features", "fail", str(exc), setting=True)
    return CheckItem("features", "pass", f"{len(loaded)} features to load"
                     + (f"; the target is neutralised on {', '.join(cfg.loss.neutralize)}" if cfg.loss.neutralize else "")
                     + (f"; the score is {cfg.model.factor}" if factor else ""))


def _check_device(cfg: RunConfig, machine: MachineStatus) -> tuple[CheckItem, RunConfig | None]:
    try:
        eff = resolve(cfg, cuda_available=machine.cuda_available, cpu_count=machine.cpu_count,
                      cpu_bf16=machine.cpu_bf16)
    except ConfigError as exc:
        return CheckItem("device", "fail", str(exc), setting=True), None
    device = eff.runtime.device
    if eff.runtime.devices > 1:
        return _check_devices(eff, machine), eff
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        gpu = next((g for g in machine.gpus if g.index == index), None)
        if gpu is not None and gpu.busy:
            pids = ", ".join(str(p["pid"]) for p in gpu.processes) or "none listed"
            return CheckItem("device", "warn", f"{gpu.name} is busy (utilisation {gpu.utilization}%, processes: {pids})"), eff
        name = gpu.name if gpu else device
        return CheckItem("device", "pass", f"training on {name} ({eff.train.mode} mode, {eff.runtime.precision})"), eff
    if machine.gpus and not machine.cuda_available:
        why = f"{len(machine.gpus)} GPU(s) present but this torch build has no CUDA; training will use the CPU"
    elif machine.gpus:
        why = "runtime.device=cpu: training will use the CPU although a GPU is present"
    else:
        why = f"no GPU ({machine.gpu_note or 'none found'}): training will use the CPU"
    return CheckItem("device", "pass", f"{why} ({machine.cpu_count} cores, {eff.runtime.num_threads} threads, "
                                       f"{eff.runtime.precision})", technical=machine.gpu_error), eff


def _check_devices(eff: RunConfig, machine: MachineStatus) -> CheckItem:
    """A data-parallel run (runtime.devices > 1, atft_core.distributed): every GPU it uses, or
    its processes on the CPU (their threads are checked under 'cpu')."""
    n, mode = eff.runtime.devices, f"{eff.train.mode} mode, {eff.runtime.precision}"
    if not eff.runtime.device.startswith("cuda"):
        return CheckItem("device", "pass", f"CPU: {n} processes of {eff.runtime.num_threads} thread(s) each, "
                                           f"data-parallel (gloo; {machine.cpu_count} cores, {mode})")
    gpus = sorted(machine.gpus, key=lambda g: g.index)[:n]
    if len(gpus) < n:
        return CheckItem("device", "fail", f"runtime.devices={n} needs {n} GPUs; {len(machine.gpus)} found "
                                           f"({machine.gpu_note or 'NVML'})", setting=True)
    names = ", ".join(f"cuda:{i} {g.name}" for i, g in enumerate(gpus))
    busy = [f"cuda:{i} (utilisation {g.utilization}%)" for i, g in enumerate(gpus) if g.busy]
    if busy:
        return CheckItem("device", "warn", f"{n} GPUs, data-parallel (nccl): {names}; busy: {', '.join(busy)}")
    return CheckItem("device", "pass", f"{n} GPUs, data-parallel (nccl): {names} ({mode})")


def _check_memory(eff: RunConfig, ds: _Dataset, machine: MachineStatus) -> CheckItem:
    try:
        need = _panel_bytes(eff, ds)
    except ImportError as exc:
        return CheckItem("panel memory", "warn", f"cannot estimate the panel size: {exc}")
    device = eff.runtime.device
    on_gpu = device.startswith("cuda") and eff.train.mode == "optimized"
    if on_gpu:
        index = int(device.split(":")[1]) if ":" in device else 0
        gpu = next((g for g in machine.gpus if g.index == index), None)
        where, free = f"GPU {index}", (gpu.memory_free if gpu else 0)
    else:  # every process of a data-parallel run holds its own copy
        need *= eff.runtime.devices
        where, free = "RAM", machine.ram_available
    copies = f" ({eff.runtime.devices} processes)" if eff.runtime.devices > 1 and not on_gpu else ""
    per_gpu = " per GPU" if eff.runtime.devices > 1 and on_gpu else ""
    text = f"panel (with FAN inputs) needs ~{_gib(need)}{copies} in {where}{per_gpu}, {_gib(free)} free"
    if need > free:
        return CheckItem("panel memory", "fail", text + ": it does not fit")
    if need > MEMORY_WARN_FRACTION * free:
        return CheckItem("panel memory", "warn", text + ": little room left for activations")
    return CheckItem("panel memory", "pass", text)


def _check_disk(runs_dir: Path, eff: RunConfig, n_params: int | None, plan: DayPlan | None, probes: Probes,
                n_runs: int = 1) -> CheckItem:
    size = run_disk_bytes(eff, n_params, plan)
    need = size.total * n_runs
    free = probes.disk_free(runs_dir)
    writer = "a run writes" if n_runs == 1 else f"{n_runs} runs write"
    text = f"{_gib(free)} free at {runs_dir}; {writer} ~{_gib(need)} ({size.detail}{' each' if n_runs > 1 else ''})"
    if free < need * DISK_SAFETY_FACTOR:
        return CheckItem("disk (runs)", "fail", text + f": need at least {_gib(need * DISK_SAFETY_FACTOR)}")
    if free - need < LOW_DISK_BYTES:
        return CheckItem("disk (runs)", "warn", text + ": low headroom")
    return CheckItem("disk (runs)", "pass", text)


def _check_checkpoint(cfg: RunConfig, n_features: int, items: list[CheckItem]) -> int | None:
    """Append the checkpoint-size item; returns the parameter count (None if unknown)."""
    try:
        n_params = count_parameters(cfg, n_features)
    except Exception as exc:  # noqa: BLE001 - the model may refuse a config; say so, assume small
        items.append(CheckItem("checkpoint size", "warn", f"cannot build the model to count parameters: {exc}"))
        return None
    one = checkpoint_bytes(n_params, cfg.train.ema_decay > 0)
    items.append(CheckItem("checkpoint size", "pass", f"{n_params:,} parameters -> ~{one / 1024**2:.1f} MiB per "
                           f"checkpoint ({CHECKPOINT_COPIES} kept: best.pt, last.pt)"))
    return n_params


def _check_days(cfg: RunConfig, ds: _Dataset) -> tuple[CheckItem, DayPlan | None]:
    """The splits and usable days the trainer will find (`atft_core.plan`): a horizon the dataset
    lacks, data.start/end outside its dates, a lookback or min_stocks_per_day leaving no day."""
    try:
        plan = plan_days(cfg, ds.summary)
    except (ConfigError, DataError) as exc:
        return CheckItem("days", "fail", str(exc), setting=True), None
    days_per_step = max(1, cfg.train.days_per_step)   # 0 (auto) only when the device check failed
    steps = plan.steps_per_epoch(days_per_step)
    detail = f"{plan.describe()}; an epoch is {steps:,} step(s) of {days_per_step} day(s)"
    if len(plan.test_days) == 0:
        return CheckItem("days", "warn", detail + ": no test day, the run will have no test metrics"), plan
    return CheckItem("days", "pass", detail), plan


def _check_duration(cfg: RunConfig, eff: RunConfig, plan: DayPlan, runs_dir: Path, machine: MachineStatus,
                    n_runs: int) -> CheckItem:
    """How long training will take (`atft_core.duration`): measured by earlier runs of this size,
    or a guess that says so; in safe mode, optimized mode's estimate when it is much shorter."""
    estimate = estimate_duration(eff, plan, runs_dir)
    optimized = resolve(cfg.replace(**{"train.mode": "optimized"}), cuda_available=machine.cuda_available,
                        cpu_count=machine.cpu_count, cpu_bf16=machine.cpu_bf16)
    hint = optimized_hint(eff, plan, runs_dir, estimate, optimized)
    epochs = f"{sum(eff.train.phase_epochs)} epochs of {plan.steps_per_epoch(eff.train.days_per_step):,} steps"
    group = f"; {n_runs} runs one after another: about {format_duration(estimate.seconds * n_runs)}" if n_runs > 1 else ""
    return CheckItem("duration", "pass", f"{epochs}, {estimate.detail}{group}{hint}")


def _check_threads(eff: RunConfig, machine: MachineStatus) -> CheckItem:
    threads, processes = eff.runtime.num_threads, eff.runtime.devices
    if processes > 1:
        threads *= processes
        text = f"{machine.cpu_count} cores; {processes} processes x {eff.runtime.num_threads} torch thread(s)"
        if threads > machine.cpu_count:
            return CheckItem("cpu", "warn", text + f" = {threads} threads is more than the cores "
                             "(runtime.devices x runtime.num_threads): they will slow each other down")
        return CheckItem("cpu", "pass", text)
    text = f"{machine.cpu_count} cores; {threads} torch thread(s)"
    if threads > machine.cpu_count:
        return CheckItem("cpu", "warn", text + f": runtime.num_threads={threads} is more than the cores, "
                         "the threads will slow each other down")
    return CheckItem("cpu", "pass", text)


def preflight(cfg: RunConfig, runs_dir: Path | str, probes: Probes | None = None, n_runs: int = 1) -> list[CheckItem]:
    """The checklist for training `cfg` into `runs_dir`; see `verdict` for the overall answer.

    `n_runs` > 1 checks for that many runs of `cfg` trained one after another (a seed group):
    memory as for one, disk for all of them."""
    if n_runs < 1:
        raise ValueError(f"preflight: n_runs must be >= 1, got {n_runs}")
    probes = probes or Probes()
    runs_dir = Path(runs_dir)
    data_dir = Path(cfg.data.path).expanduser().resolve().parent
    machine = machine_status(probes, paths=(runs_dir, data_dir))
    device_item, eff = _check_device(cfg, machine)
    items, ds = _check_dataset(cfg)
    plan = None
    if ds is not None and ds.summary is not None:
        days_item, plan = _check_days(eff or cfg, ds)
        items.append(days_item)
    items.append(device_item)
    if eff is not None and plan is not None and eff.model.kind == "atft_gat_fan":
        items.append(_check_duration(cfg, eff, plan, runs_dir, machine, n_runs))
    n_features = len(cfg.data.features) or (ds.n_features if ds else 0)
    if eff is not None and ds is not None:
        items.append(_check_memory(eff, ds, machine))
    if eff is not None:
        items.append(_check_measured_memory(eff, runs_dir, machine))
    n_params = None
    if not n_features:
        items.append(CheckItem("checkpoint size", "pass", "unknown until the dataset can be read"))
    else:
        n_params = _check_checkpoint(cfg, n_features, items)
    items.append(_check_disk(runs_dir, eff or cfg, n_params, plan, probes, n_runs))
    data_free = machine.disk_free[str(data_dir)]
    items.append(CheckItem("disk (dataset)", "warn" if data_free < LOW_DISK_BYTES else "pass",
                           f"{_gib(data_free)} free at {data_dir}"))
    items.append(CheckItem("ram", "pass", f"{_gib(machine.ram_available)} available of {_gib(machine.ram_total)}"))
    items.append(_check_threads(eff, machine) if eff is not None else CheckItem("cpu", "pass", f"{machine.cpu_count} cores"))
    return items


def peak_memory(device: Any) -> dict[str, float]:
    """This process's peak resident memory so far, and on a CUDA `device` the allocator's peak (GiB)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    values = {PEAK_RSS_METRIC: maxrss * (1 if sys.platform == "darwin" else 1024) / GiB}  # Linux: KiB
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        values[PEAK_GPU_METRIC] = torch.cuda.max_memory_allocated(device) / GiB
    return values


def memory_key(cfg: RunConfig) -> tuple:
    """What decides an effective config's memory: data shape, model sizes, which phases run (the GAT
    phases need the most), batch, mode, device and precision."""
    d, m, t = cfg.data, cfg.model, cfg.train
    model = tuple((k, v) for k, v in sorted(asdict(m).items()) if k not in SHAPE_FREE_MODEL_FIELDS)
    phases_run = tuple(epochs > 0 for epochs in t.phase_epochs)
    return (str(Path(d.path).expanduser().resolve()), d.start, d.end, d.features, d.lookback, d.horizons, model,
            phases_run, t.days_per_step, t.mode, cfg.runtime.device.split(":")[0], cfg.runtime.precision)


def measured_peak(eff: RunConfig, runs_dir: Path, metric: str) -> tuple[float, str] | None:
    """(highest `metric`, run id) over the runs in `runs_dir` whose effective config has the same
    `memory_key`; None when no such run logged it."""
    key = memory_key(eff)
    same = [run_id for run_id, cfg in earlier_runs(runs_dir) if memory_key(cfg) == key]
    if not same:
        return None
    peaks = query_metrics(runs_dir, same, [metric])
    if peaks.is_empty():
        return None
    top = peaks.sort("value", descending=True).row(0, named=True)
    return float(top["value"]), str(top["run_id"])


def _check_measured_memory(eff: RunConfig, runs_dir: Path, machine: MachineStatus) -> CheckItem:
    """The panel estimate leaves out activations and the allocator's reserve; an earlier run with
    the same sizes measured all of it, so its peak is compared with what is free now."""
    on_gpu = eff.runtime.device.startswith("cuda")
    metric = PEAK_GPU_METRIC if on_gpu else PEAK_RSS_METRIC
    found = measured_peak(eff, runs_dir, metric)
    if found is None:
        return CheckItem("measured memory", "pass", f"no earlier run in {runs_dir} with these sizes has logged its "
                         "peak memory yet; this one will, for the next check")
    peak, run_id = found
    if on_gpu:
        index = int(eff.runtime.device.split(":")[1]) if ":" in eff.runtime.device else 0
        gpu = next((g for g in machine.gpus if g.index == index), None)
        where, free = f"GPU {index} memory", (gpu.memory_free if gpu else 0)
    else:
        where, free = "RAM", machine.ram_available
    text = f"run {run_id} with the same data, sizes and device peaked at {peak:.1f} GiB; {_gib(free)} {where} free now"
    if peak * GiB > free:
        return CheckItem("measured memory", "fail", text + ": it would not fit (is another run holding memory?)")
    if peak * GiB > MEASURED_MEMORY_WARN_FRACTION * free:
        return CheckItem("measured memory", "warn", text + ": little to spare")
    return CheckItem("measured memory", "pass", text)


@dataclass
class MemoryNeed:
    """The peak memory a run is expected to take, and where the figure comes from."""

    ram_bytes: int
    gpu_bytes: int
    """0 unless the run trains on a GPU."""
    source: str


def memory_need(cfg: RunConfig, runs_dir: Path | str, probes: Probes | None = None) -> MemoryNeed:
    """What a run of `cfg` will peak at: the highest peak an earlier run with the same sizes logged
    (RAM, and GPU memory on a GPU), else the panel estimate plus a trainer's base
    (`TRAINER_BASE_BYTES`). RAM counts every process of a data-parallel run (each holds its own
    panel); GPU memory is per GPU. The queue admits a run only when this fits beside the running ones."""
    probes = probes or Probes()
    eff = resolve(cfg, cuda_available=bool(probes.cuda_available()), cpu_count=int(probes.cpu_count()),
                  cpu_bf16=bool(probes.cpu_bf16()))
    on_gpu = eff.runtime.device.startswith("cuda")
    rss = measured_peak(eff, Path(runs_dir), PEAK_RSS_METRIC)
    gpu = measured_peak(eff, Path(runs_dir), PEAK_GPU_METRIC) if on_gpu else None
    try:
        panel = _panel_bytes(eff, _dataset_summary(eff.data.path))
    except Exception:  # noqa: BLE001 - an unreadable dataset fails the pre-flight; here it only means "unknown"
        panel = 0
    ram = (int(rss[0] * GiB) if rss else TRAINER_BASE_BYTES + panel) * eff.runtime.devices
    gpu_bytes = int(gpu[0] * GiB) if gpu else (panel if on_gpu and eff.train.mode == "optimized" else 0)
    measured = [f"run {found[1]} peaked at {found[0]:.1f} GiB {what}" for found, what in ((rss, "RAM"), (gpu, "GPU"))
                if found]
    source = "; ".join(measured) if measured else f"estimated: panel {_gib(panel)} + trainer {_gib(TRAINER_BASE_BYTES)}"
    return MemoryNeed(ram, gpu_bytes, source)


def format_checklist(items: Sequence[CheckItem]) -> str:
    """One line per item plus the overall verdict."""
    width = max(len(i.name) for i in items)
    lines = [f"[{i.verdict.upper():4}] {i.name.ljust(width)}  {i.detail}" for i in items]
    return "\n".join(lines + [f"verdict: {verdict(items)}"])


def main(argv: list[str] | None = None) -> int:
    """CLI: machine status, plus the pre-flight checklist for a config. Exit 2 for a bad setting
    (also one the dataset refutes: a missing horizon, no usable day), 1 when the checklist fails
    otherwise (no room on this machine)."""
    parser = argparse.ArgumentParser(prog="python -m atft_core.system",
                                     description="Machine status and pre-flight check (more: --section.field=value).")
    parser.add_argument("--config", help="JSON config file to check")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--json", action="store_true")
    args, extra = parser.parse_known_args(argv)
    try:
        overrides, rest = parse_overrides(extra)
        if rest:
            raise ConfigError(f"unrecognised arguments: {' '.join(rest)}")
        cfg = build_config(args.config, overrides) if (args.config or overrides) else None
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    machine = machine_status(paths=(args.runs_dir,))
    items = preflight(cfg, args.runs_dir) if cfg else []
    if args.json:
        print(json.dumps({"machine": machine.to_dict(), "checks": [i.to_dict() for i in items],
                          "verdict": verdict(items) if items else None}, indent=2))
    else:
        print(machine.describe())
        if items:
            print(format_checklist(items))
    if bad := next((i for i in items if i.verdict == "fail" and i.setting), None):
        print(f"error: {bad.detail}", file=sys.stderr)
        return 2
    return 1 if items and verdict(items) == "fail" else 0


if __name__ == "__main__":
    run_cli(main)
