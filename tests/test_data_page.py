"""AppTest of the Data page: output names confined to the data folder, errors shown, uploads."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_app_pages import app, demo_file, dirs, no_exceptions, open_page, texts  # noqa: F401 (fixtures)


def _button(at, label: str):
    return next(b for b in at.button if b.label == label)


@pytest.mark.parametrize("name", ["../escape_demo.parquet", "ABSOLUTE", "sub/x.parquet", ".."])
def test_demo_output_name_cannot_leave_the_data_folder(dirs, name):
    data, _ = dirs
    absolute = data.parent / "elsewhere" / "escape_abs.parquet"
    name = str(absolute) if name == "ABSOLUTE" else name
    at = open_page(app(), "data")
    at.text_input(key="demo_name").set_value(name)
    at.number_input(key="demo_stocks").set_value(10)
    at.number_input(key="demo_days").set_value(40)
    _button(at, "Generate demo").click().run()
    no_exceptions(at)
    assert any("Output file" in e for e in texts(at, "error")), texts(at, "error")
    assert not (data.parent / "escape_demo.parquet").exists()
    assert not absolute.exists()
    assert sorted(p.name for p in data.iterdir()) == ["demo.parquet"]


def test_build_output_name_cannot_leave_the_data_folder(dirs, demo_file):
    data, _ = dirs
    raw = demo_file.parent / f"{demo_file.stem}_raw"
    at = open_page(app(), "data")
    at.text_input(key="quotes_path").set_value(str(raw / "daily_quotes.parquet"))
    at.text_input(key="listed_path").set_value(str(raw / "listed_info.csv"))
    at.text_input(key="build_name").set_value("../escape_build.parquet")
    at.run()
    _button(at, "Build dataset").click().run()
    no_exceptions(at)
    assert any("Output file" in e for e in texts(at, "error")), texts(at, "error")
    assert not (data.parent / "escape_build.parquet").exists()


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _write_upload(at, key: str, name: str, data: bytes):
    at.file_uploader(key=key).set_value((name, data, "application/octet-stream"))


def _raw(demo_file: Path) -> Path:
    return demo_file.parent / f"{demo_file.stem}_raw"


def test_a_failed_build_shows_its_error_naming_the_uploaded_file(dirs, demo_file, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "systemp"))
    (tmp_path / "systemp").mkdir()
    data, _ = dirs
    raw = _raw(demo_file)
    at = open_page(app(), "data")
    # two uploads with the same name: the good quotes and a listed-info file without Sector33Code
    _write_upload(at, "quotes_upload", "data.parquet", (raw / "daily_quotes.parquet").read_bytes())
    bad_listed = tmp_path / "bad.parquet"
    import polars as pl
    pl.read_csv(raw / "listed_info.csv").drop("Sector33Code").write_parquet(bad_listed)
    _write_upload(at, "listed_upload", "data.parquet", bad_listed.read_bytes())
    at.run()
    assert "daily quotes: uploaded data.parquet" in " ".join(texts(at, "caption"))
    _button(at, "Build dataset").click().run()
    no_exceptions(at)
    errors = [e for e in texts(at, "error") if e.startswith("error: ")]
    assert len(errors) == 1 and "listed-info file 'data.parquet' (uploaded)" in errors[0], errors
    assert "atft-upload" not in errors[0] and ".tmp" not in errors[0]
    status = next(b for b in _walk(at.main) if getattr(b, "type", "") == "status")
    assert "failed" in status.proto.label and status.proto.expanded  # the box stays open
    # every run with the upload attached leaves no copy behind
    at.run()
    assert not list((tmp_path / "systemp").iterdir())


def test_build_with_statements_from_a_path_and_overwrite_needs_consent(dirs, tmp_path):
    data, _ = dirs
    from atft_core.data.demo import make_demo

    raw = tmp_path / "long_raw"
    make_demo(tmp_path / "long.parquet", n_stocks=20, n_days=520, seed=2)
    at = open_page(app(), "data")
    for key, name in (("quotes_path", "daily_quotes.parquet"), ("listed_path", "listed_info.csv"),
                      ("statements_path", "statements.parquet")):
        at.text_input(key=key).set_value(str(raw / name))
    at.text_input(key="build_name").set_value("demo.parquet")  # exists in the data folder
    at.run()
    assert _button(at, "Build dataset").disabled
    at.checkbox(key="build_overwrite").check().run()
    _button(at, "Build dataset").click().run()
    no_exceptions(at)
    assert f"Wrote {data / 'demo.parquet'}" in texts(at, "success")
    summary = next(c.value for c in at.code if "demo.parquet" in c.value and "statements filing known" in c.value)
    assert "calendar  " in summary and all(c.proto.wrap_lines for c in at.code)


def test_generate_demo_asks_before_replacing_a_file(dirs):
    data, _ = dirs
    before = (data / "demo.parquet").stat().st_mtime_ns
    at = open_page(app(), "data")
    at.text_input(key="demo_name").set_value("demo.parquet").run()
    assert _button(at, "Generate demo").disabled
    assert any("Replace the existing demo.parquet" in c.label for c in at.checkbox)
    assert (data / "demo.parquet").stat().st_mtime_ns == before


def test_coverage_chart_dates_show_years(dirs):
    at = open_page(app(), "data")
    spec = next(c for c in at.get("vega_lite_chart")).proto.spec
    assert '"format": "%b %Y"' in spec or '"format":"%b %Y"' in spec


def test_fetch_from_the_page_fills_the_build_form_and_keeps_the_key_to_itself(dirs):
    from fake_jquants import FakeJQuants

    data, _ = dirs
    key = "page-SECRET-5d2e8a"
    fake = FakeJQuants(key=key)
    url = fake.start()
    try:
        at = open_page(app(), "data")
        assert _button(at, "Fetch").disabled  # no key yet
        for name, value in (("jq_key", key), ("jq_from", "2024-02-01"), ("jq_to", "2024-02-09"), ("jq_url", url)):
            at.text_input(key=name).set_value(value)
        at.run()
        _button(at, "Fetch").click().run()
        no_exceptions(at)
        assert any("Fetched into" in s for s in texts(at, "success")), texts(at, "error")
        assert at.text_input(key="quotes_path").value == str(data / "jquants" / "daily_quotes.parquet")
        assert at.text_input(key="statements_path").value == str(data / "jquants" / "statements.parquet")
        shown = " ".join(str(getattr(e, "value", "")) for e in _walk(at.main) if getattr(e, "type", "") != "text_input")
        assert "Fetched into" in shown and key not in shown  # only its own (password) field holds it
        assert all(key.encode() not in p.read_bytes() for p in data.rglob("*") if p.is_file())
        at.text_input(key="jq_key").set_value("wrong").run()
        _button(at, "Fetch").click().run()
        assert any("rejected the API key" in e for e in texts(at, "error"))
    finally:
        fake.stop()
