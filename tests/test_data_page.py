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
