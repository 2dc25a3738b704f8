"""Machine probes and the pre-flight checklist, with faked disks and GPUs (injected probes)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from atft_core import config, system
from atft_core.config import RunConfig
from atft_core.plan import plan_days
from atft_core.run_files import RunFiles, read_json
from atft_core.run_size import run_disk_bytes
from atft_core.train import run_training
from atft_core.data.validate import validate_dataset
from atft_core.system import CheckItem, GpuInfo, Probes, preflight, verdict

REPO = Path(__file__).resolve().parents[1]
GiB = 1024**3


@pytest.fixture
def dataset(demo_dataset: Path) -> Path:
    """The shared demo dataset (conftest)."""
    return demo_dataset


def no_gpu() -> list[GpuInfo]:
    raise RuntimeError("NVML Shared Library Not Found")


def probes(**changes) -> Probes:
    """Plenty of everything, no GPU, unless changed."""
    base = Probes(disk_free=lambda p: 500 * GiB, ram=lambda: (64 * GiB, 48 * GiB), gpus=no_gpu,
                  cpu_count=lambda: 8, cuda_available=lambda: False, cpu_bf16=lambda: False)
    return dataclasses.replace(base, **changes)


def gpu(free: int = 70 * GiB, util: int = 0, procs: int = 0) -> GpuInfo:
    return GpuInfo(0, "NVIDIA H100", 80 * GiB, free, util, [{"pid": 1000 + i, "used_memory": GiB} for i in range(procs)])


def item(items: list[CheckItem], name: str) -> CheckItem:
    return next(i for i in items if i.name == name)


def cfg_for(path: Path | str, **dotted) -> RunConfig:
    return RunConfig.from_dict({"data": {"path": str(path)}, "model": {"hidden_size": 8}}).replace(**dotted)


def test_verdict_order() -> None:
    assert verdict([CheckItem("a", "pass", ""), CheckItem("b", "warn", "")]) == "warn"
    assert verdict([CheckItem("a", "warn", ""), CheckItem("b", "fail", "")]) == "fail"
    assert verdict([CheckItem("a", "pass", "")]) == "pass"


def test_machine_status_without_gpu_is_normal() -> None:
    status = system.machine_status(probes(), paths=("runs",))
    assert status.gpus == [] and status.cpu_count == 8
    assert status.gpu_note == "no NVIDIA driver found" and status.gpu_error == "RuntimeError: NVML Shared Library Not Found"
    assert status.disk_free == {"runs": 500 * GiB}
    assert "training will use the CPU" in status.describe()
    real = system.machine_status(paths=(str(REPO),))  # real probes on this machine: must not raise
    assert real.cpu_count >= 1 and real.ram_total > 0 and real.disk_free[str(REPO)] > 0
    if not real.gpus:   # e.g. "NVMLError_LibraryNotFound: ..." in words, the raw text kept aside
        assert "NVMLError" not in real.gpu_note and real.gpu_error


def test_the_device_line_says_no_driver_in_words_and_keeps_the_raw_error(dataset: Path, tmp_path: Path) -> None:
    device = item(preflight(cfg_for(dataset), tmp_path, probes()), "device")
    assert device.detail.startswith("no GPU (no NVIDIA driver found): training will use the CPU")
    assert "NVML" not in device.detail and device.technical == "RuntimeError: NVML Shared Library Not Found"


def test_missing_dataset_fails(tmp_path: Path) -> None:
    items = preflight(cfg_for(tmp_path / "nope.parquet"), tmp_path, probes())
    assert item(items, "dataset").verdict == "fail" and "does not exist" in item(items, "dataset").detail
    assert verdict(items) == "fail"


def test_invalid_dataset_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_text("not a parquet file")
    items = preflight(cfg_for(bad), tmp_path, probes())
    assert item(items, "dataset").verdict == "fail"


def test_named_features_are_checked_against_the_dataset_before_launch(dataset: Path, tmp_path: Path) -> None:
    assert not [i for i in preflight(cfg_for(dataset), tmp_path, probes()) if i.name == "features"]  # nothing named
    good = cfg_for(dataset, **{"loss.neutralize": ("feat_beta_60", "feat_vol_20")})
    check = item(preflight(good, tmp_path, probes()), "features")
    assert check.verdict == "pass" and "neutralised on feat_beta_60, feat_vol_20" in check.detail
    typo = cfg_for(dataset, **{"data.features": ("feat_ret_1d", "feat_nope")})
    items = preflight(typo, tmp_path, probes())
    assert verdict(items) == "fail" and "['feat_nope']" in item(items, "features").detail
    not_loaded = cfg_for(dataset, **{"data.features": ("feat_ret_1d", "feat_beta_60"), "loss.neutralize": ("feat_vol_20",)})
    detail = item(preflight(not_loaded, tmp_path, probes()), "features").detail
    assert "loss.neutralize: ['feat_vol_20'] not among the 2 loaded features" in detail
    factor = {"model.kind": "factor", "model.factor": "feat_fin_ey"}  # a price-only dataset has no statements
    assert "model.factor: ['feat_fin_ey'] not among" in item(preflight(cfg_for(dataset, **factor), tmp_path, probes()),
                                                             "features").detail


def test_feature_count_is_checked_before_launch(dataset: Path, tmp_path: Path) -> None:
    """The old system loaded 99 of 306 features without a word: a wrong count fails the checklist."""
    n_features = validate_dataset(dataset).n_features
    items = preflight(cfg_for(dataset, **{"data.expected_feature_count": 306}), tmp_path, probes())
    assert verdict(items) == "fail"
    assert f"loaded {n_features} features but data.expected_feature_count=306" in item(items, "features").detail
    right = cfg_for(dataset, **{"data.expected_feature_count": n_features})
    assert item(preflight(right, tmp_path, probes()), "features").verdict == "pass"


def test_no_gpu_means_cpu(dataset: Path, tmp_path: Path) -> None:
    items = preflight(cfg_for(dataset), tmp_path, probes())
    assert item(items, "device").verdict == "pass" and "use the CPU" in item(items, "device").detail
    assert verdict(items) in ("pass", "warn")  # the demo may lack sectors: that only warns
    assert all(i.verdict != "fail" for i in items)
    assert item(items, "panel memory").verdict == "pass"
    assert "fp32" in item(items, "device").detail


def test_cpu_precision_follows_native_bf16(dataset: Path, tmp_path: Path) -> None:
    optimized = cfg_for(dataset, **{"train.mode": "optimized"})
    with_bf16 = preflight(optimized, tmp_path, probes(cpu_bf16=lambda: True))
    assert "bf16" in item(with_bf16, "device").detail
    without = preflight(optimized, tmp_path, probes(cpu_bf16=lambda: False))
    assert "fp32" in item(without, "device").detail
    assert "native bf16" in system.machine_status(probes(cpu_bf16=lambda: True), paths=[tmp_path]).describe()


def test_cuda_requested_without_cuda_fails(dataset: Path, tmp_path: Path) -> None:
    items = preflight(cfg_for(dataset, **{"runtime.device": "cuda"}), tmp_path, probes())
    assert item(items, "device").verdict == "fail" and "no CUDA" in item(items, "device").detail


def test_busy_gpu_warns_idle_gpu_passes(dataset: Path, tmp_path: Path) -> None:
    busy = preflight(cfg_for(dataset), tmp_path, probes(gpus=lambda: [gpu(util=95, procs=2)], cuda_available=lambda: True))
    assert item(busy, "device").verdict == "warn" and "1000" in item(busy, "device").detail
    idle = preflight(cfg_for(dataset), tmp_path, probes(gpus=lambda: [gpu()], cuda_available=lambda: True))
    assert item(idle, "device").verdict == "pass" and "H100" in item(idle, "device").detail
    cpu_torch = preflight(cfg_for(dataset), tmp_path, probes(gpus=lambda: [gpu()], cuda_available=lambda: False))
    assert "no CUDA" in item(cpu_torch, "device").detail


def test_panel_must_fit_device_memory(dataset: Path, tmp_path: Path) -> None:
    tiny_ram = preflight(cfg_for(dataset), tmp_path, probes(ram=lambda: (GiB, 1000)))
    assert item(tiny_ram, "panel memory").verdict == "fail" and verdict(tiny_ram) == "fail"
    on_gpu = cfg_for(dataset, **{"train.mode": "optimized"})
    small_gpu = preflight(on_gpu, tmp_path, probes(gpus=lambda: [gpu(free=1000)], cuda_available=lambda: True))
    assert item(small_gpu, "panel memory").verdict == "fail" and "GPU 0" in item(small_gpu, "panel memory").detail


def test_disk_verdicts(dataset: Path, tmp_path: Path) -> None:
    def with_disk(free: int) -> CheckItem:
        return item(preflight(cfg_for(dataset), tmp_path, probes(disk_free=lambda p: free)), "disk (runs)")
    assert with_disk(2 * 1024**2).verdict == "fail"           # 2 MiB: the run does not fit twice
    assert with_disk(GiB).verdict == "warn"                   # fits, but little headroom
    assert with_disk(100 * GiB).verdict == "pass"


def _one_run_bytes(cfg: RunConfig) -> int:
    eff = config.resolve(cfg, cuda_available=False, cpu_count=8)
    return run_disk_bytes(eff, system.count_parameters(cfg, 49), plan_days(cfg)).total


def test_a_seed_group_needs_disk_for_every_run(dataset: Path, tmp_path: Path) -> None:
    free = 3 * system.DISK_SAFETY_FACTOR * _one_run_bytes(cfg_for(dataset))   # three runs' worth, with the margin
    def disk(n_runs: int) -> CheckItem:
        return item(preflight(cfg_for(dataset), tmp_path, probes(disk_free=lambda p: free), n_runs=n_runs), "disk (runs)")
    assert disk(1).verdict != "fail" and "a run writes" in disk(1).detail
    assert disk(5).verdict == "fail" and "5 runs write" in disk(5).detail
    with pytest.raises(ValueError, match="n_runs"):
        preflight(cfg_for(dataset), tmp_path, probes(), n_runs=0)


def test_checkpoint_size_counts_real_parameters(dataset: Path, tmp_path: Path) -> None:
    small = system.count_parameters(cfg_for(dataset), 10)
    large = system.count_parameters(cfg_for(dataset, **{"model.hidden_size": 64}), 10)
    assert 0 < small < large
    assert system.checkpoint_bytes(1000) == 1000 * 4 * 3                      # weights + Adam's two moments
    assert system.checkpoint_bytes(1000, average=True) == 1000 * 4 * 4        # + the raw weights beside the average
    items = preflight(cfg_for(dataset), tmp_path, probes())
    assert "parameters" in item(items, "checkpoint size").detail


def test_the_disk_estimate_covers_what_a_run_writes(dataset: Path, tmp_path: Path) -> None:
    """Each part of the estimate against the files of a real (tiny) run: at least what was
    written, and not wildly more (issue 19: the checklist said ~260 MiB for a run of ~0.5 MiB)."""
    cfg = cfg_for(dataset, **{"data.lookback": 5, "model.fan_top_k": 2, "model.encoder_heads": 2,
                              "model.gat_heads": 2, "train.phase_epochs": (1, 0, 1, 0), "train.days_per_step": 4})
    files = RunFiles(tmp_path / "run")
    assert run_training(cfg, files.root) == "completed"
    eff = config.resolve(cfg, cuda_available=False, cpu_count=8)
    size = run_disk_bytes(eff, read_json(files.config)["resolved"]["n_params"], plan_days(cfg))
    written = {p.name: p.stat().st_size for p in files.root.rglob("*") if p.is_file()}
    checkpoints = written["best.pt"] + written["last.pt"]
    assert checkpoints <= size.checkpoints <= 3 * checkpoints
    assert written["predictions.parquet"] <= size.predictions <= 2 * written["predictions.parquet"]
    assert written["metrics.jsonl"] <= size.metrics <= 3 * written["metrics.jsonl"]
    assert sum(written.values()) <= size.total
    detail = item(preflight(cfg, tmp_path, probes()), "disk (runs)").detail
    assert "predictions ~" in detail and "temp copy while saving" in detail


def test_cli_json(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "atft_core.system", "--json", "--runs-dir", str(tmp_path),
                          "--data.path", str(tmp_path / "missing.parquet")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr  # the dataset is missing: fail
    report = json.loads(out.stdout)
    assert report["verdict"] == "fail" and report["machine"]["cpu_count"] >= 1
    bad = subprocess.run([sys.executable, "-m", "atft_core.system", "--model.hidden_sz=3"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "hidden_sz" in bad.stderr


def test_memory_estimate_counts_the_fan_inputs(dataset: Path, tmp_path: Path) -> None:
    """FAN's once-per-run inputs are three values per stock-day-feature on top of the panel."""
    import re
    from atft_core.data.validate import validate_dataset
    from atft_core.nn.fan import fan_bytes

    def needed(**changes) -> float:
        detail = item(preflight(cfg_for(dataset, **changes), tmp_path, probes()), "panel memory").detail
        value, unit = re.search(r"needs ~([0-9.]+) (MiB|GiB)", detail).groups()
        return float(value) * (1024 if unit == "GiB" else 1)

    s = validate_dataset(str(dataset))
    with_fan, without = needed(), needed(**{"model.fan_top_k": 0})
    assert with_fan > without
    assert fan_bytes(s.n_days, s.n_stocks, s.n_features) == s.n_days * s.n_stocks * s.n_features * 12


def _earlier_run(runs_dir: Path, run_id: str, cfg: RunConfig, peak_gib: float) -> None:
    """A finished run folder as the trainer leaves it: effective config and a logged peak."""
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    eff = system.resolve(cfg, cuda_available=False, cpu_count=8, cpu_bf16=False)  # the probes() machine
    (folder / "config.json").write_text(json.dumps({"config": eff.to_dict()}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "step": 0, "phase": 0, "wall_time": float(e), "name": system.PEAK_RSS_METRIC,
                    "value": peak_gib * e / 2}) + "\n" for e in (1, 2)))   # the last epoch holds the peak


def test_measured_peak_of_an_earlier_run_with_the_same_sizes_is_checked(dataset: Path, tmp_path: Path) -> None:
    cfg = cfg_for(dataset)
    first = item(preflight(cfg, tmp_path / "runs", probes()), "measured memory")
    assert first.verdict == "pass" and "no earlier run" in first.detail and "peak memory" in first.detail
    runs = tmp_path / "runs"
    _earlier_run(runs, "other-size", cfg.replace(**{"model.hidden_size": 16}), peak_gib=1000.0)   # ignored
    _earlier_run(runs, "no-gat-phase", cfg.replace(**{"train.phase_epochs": (1, 1, 0, 0)}), peak_gib=1000.0)
    _earlier_run(runs, "same-size", cfg.replace(**{"model.encoder_dropout": 0.3}), peak_gib=40.0)  # same tensors
    check = item(preflight(cfg, runs, probes()), "measured memory")     # 48 GiB available
    assert check.verdict == "warn" and "run same-size" in check.detail and "40.0 GiB" in check.detail
    busy = preflight(cfg, runs, probes(ram=lambda: (64 * GiB, 30 * GiB)))
    assert item(busy, "measured memory").verdict == "fail" and verdict(busy) == "fail"
    roomy = item(preflight(cfg, runs, probes(ram=lambda: (256 * GiB, 200 * GiB))), "measured memory")
    assert roomy.verdict == "pass" and "40.0 GiB" in roomy.detail


def test_a_data_parallel_run_checks_every_device_it_uses(dataset: Path, tmp_path: Path) -> None:
    """runtime.devices > 1: every GPU is named and checked (too few fail, a busy one warns); on the
    CPU the processes' threads together are held against the cores, and each holds the panel."""
    two = cfg_for(dataset, **{"runtime.devices": 2, "runtime.device": "cuda", "train.mode": "optimized"})
    cuda = {"cuda_available": lambda: True}
    one_gpu = preflight(two, tmp_path, probes(gpus=lambda: [gpu()], **cuda))
    assert item(one_gpu, "device").verdict == "fail" and "needs 2 GPUs; 1 found" in item(one_gpu, "device").detail
    both = preflight(two, tmp_path, probes(gpus=lambda: [gpu(), dataclasses.replace(gpu(), index=1)], **cuda))
    assert item(both, "device").verdict == "pass" and "cuda:0" in item(both, "device").detail \
        and "cuda:1" in item(both, "device").detail and "per GPU" in item(both, "panel memory").detail
    busy = preflight(two, tmp_path, probes(gpus=lambda: [gpu(), dataclasses.replace(gpu(util=95), index=1)], **cuda))
    assert item(busy, "device").verdict == "warn" and "busy: cuda:1" in item(busy, "device").detail

    on_cpu = cfg_for(dataset, **{"runtime.devices": 2, "runtime.num_threads": 2})
    cores = {"cpu_count": lambda: 4}
    fits = preflight(on_cpu, tmp_path, probes(**cores))
    assert item(fits, "cpu").verdict == "pass" and "2 processes x 2" in item(fits, "cpu").detail
    assert "2 processes of 2 thread(s)" in item(fits, "device").detail and "(2 processes)" in item(fits, "panel memory").detail
    over = preflight(on_cpu.replace(**{"runtime.num_threads": 3}), tmp_path, probes(**cores))
    assert item(over, "cpu").verdict == "warn" and "= 6 threads is more than the cores" in item(over, "cpu").detail
