"""User-given names and paths cannot escape runs/ or the data folders, nor reach a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from atft_core import runs
from atft_core.config import RunConfig
from atft_core.paths import (UnsafePathError, check_run_id, check_tag, clean_text, data_file, resolve_within, run_path,
                             slugify)
from atft_core.run_files import RunFiles, update_status, write_json_atomic
from atft_core.runs import launch, queue

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", "/etc", "a\\b", ".hidden", "a..b", "", "x" * 200,
                                 "run;rm -rf ~", "$(touch pwned)", "`id`", "a b", "run\n2", "run\x00"])
def test_bad_run_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        run_path(tmp_path, bad)
    with pytest.raises(UnsafePathError):
        runs.run_state(tmp_path, bad)


def test_good_run_id_stays_inside(tmp_path: Path) -> None:
    assert run_path(tmp_path, "20250101-120000-gat-ab12cd") == tmp_path.resolve() / "20250101-120000-gat-ab12cd"
    assert check_run_id("a.b_c-1") == "a.b_c-1"


def test_symlinked_run_folder_outside_is_refused_and_not_listed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    update_status(RunFiles(outside), state="completed")
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="outside"):
        run_path(runs_dir, "evil")
    assert runs.list_runs(runs_dir) == []
    with pytest.raises(UnsafePathError):
        launch.delete_run(runs_dir, "evil")
    assert (outside / "status.json").exists()


def test_resolve_within_refuses_escapes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.parquet").write_bytes(b"")
    assert resolve_within(data / "ok.parquet", [data]) == (data / "ok.parquet").resolve()
    for bad in (data / ".." / "x.parquet", Path("/etc/passwd"), "~/x.parquet"):
        with pytest.raises(UnsafePathError, match="outside the allowed folders"):
            resolve_within(bad, [data])
    (data / "link.parquet").symlink_to("/etc/passwd")
    with pytest.raises(UnsafePathError):
        resolve_within(data / "link.parquet", [data])


@pytest.mark.parametrize("bad", ["../x.parquet", "/etc/x.parquet", "a/b.parquet", "..", ".hidden.parquet", "x.csv", ""])
def test_data_file_names_stay_in_the_data_folder(tmp_path: Path, bad: str) -> None:
    assert data_file(tmp_path, "ok.parquet") == (tmp_path / "ok.parquet").resolve()
    with pytest.raises(UnsafePathError):
        data_file(tmp_path, bad)
    (tmp_path / "link.parquet").symlink_to("/etc/passwd")
    with pytest.raises(UnsafePathError):
        data_file(tmp_path, "link.parquet")


def test_launch_refuses_dataset_outside_data_roots(tmp_path: Path) -> None:
    cfg = RunConfig.from_dict({"data": {"path": "/etc/passwd"}})
    with pytest.raises(UnsafePathError):
        queue.launch_run(cfg, tmp_path / "runs", data_roots=[tmp_path / "data"])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("name, slug", [("GAT h64; rm -rf /", "GAT-h64-rm-rf"), ("../../etc", "etc"),
                                         ("$(id)`x`|&>", "id-x"), ("日本株", ""), ("a..b", "a.b")])
def test_names_become_safe_slugs(name: str, slug: str) -> None:
    assert slugify(name) == slug
    run_id = launch.new_run_id(name)
    assert check_run_id(run_id) == run_id
    assert "/" not in run_id and ".." not in run_id


@pytest.mark.parametrize("bad", ["a;b", "$(x)", "a b", "", "-rf", "../x", "x" * 40, "`id`", "a|b"])
def test_bad_tags_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        check_tag(bad)
    files = RunFiles(tmp_path / "r1")
    files.root.mkdir()
    write_json_atomic(files.run_info, {"id": "r1", "tags": []})
    with pytest.raises(UnsafePathError):
        launch.tag_run(tmp_path, "r1", bad)


def test_notes_and_names_are_stored_as_text_never_run(tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "r1")
    files.root.mkdir()
    write_json_atomic(files.run_info, {"id": "r1"})
    marker = tmp_path / "pwned"
    text = f"$(touch {marker}); `touch {marker}` \x1b[31m red"
    launch.note_run(tmp_path, "r1", text)
    assert launch.tag_run(tmp_path, "r1", "v1:gat") == ["v1:gat"]
    note = json.loads(files.run_info.read_text())["note"]
    assert "\x1b" not in note and "$(touch" in note
    # Through the CLI too: arguments are never passed to a shell.
    out = subprocess.run([sys.executable, "-m", "atft_core.runs", "--runs-dir", str(tmp_path), "note", "r1",
                          f"; touch {marker}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not marker.exists()
    assert clean_text("a\x07b\nc") == "ab\nc"


def test_cli_refuses_escaping_run_id(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "status.json").write_text("{}")
    out = subprocess.run([sys.executable, "-m", "atft_core.runs", "--runs-dir", str(tmp_path / "runs"),
                          "delete", "../victim"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "run id" in out.stderr
    assert victim.exists()
    assert os.listdir(tmp_path / "runs") == []
