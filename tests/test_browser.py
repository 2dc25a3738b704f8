"""Real browser: launch a tiny demo run from New run, follow it to the end, compare two runs.

Starts `streamlit run app.py` on a free 127.0.0.1 port with tmp data/runs folders and drives
Debian's Chromium through Playwright's sync API (never `playwright install`). Asserts on page
text, not pixels; screenshots go to a temporary folder.
"""

from __future__ import annotations


import pytest

from scripts.screenshots import (CHROMIUM, RUN_TIMEOUT_S, fill, free_port, launch_browser, launch_tiny,
                                 make_demo_data, settle, start_server, stop_server)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


@pytest.fixture
def server(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    dataset = make_demo_data(data)
    port = free_port()
    proc = start_server(data, runs, port, tmp_path / "server.log")
    yield f"http://127.0.0.1:{port}", dataset, runs, tmp_path
    stop_server(proc)


def test_launch_follow_and_compare_in_a_real_browser(server):
    url, dataset, runs, tmp = server
    shots = tmp / "screenshots"
    shots.mkdir()
    # The run to compare with starts first, beside the browser's, so both finish together.
    other_id = launch_tiny(dataset, runs, "other", hidden=16)
    with sync_api.sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("heading", name="New run").wait_for(timeout=30_000)
        fill(page, "Run name", "browser")
        fill(page, "model.hidden_size", "8")
        fill(page, "train.phase_epochs", "1, 1, 0, 0")
        fill(page, "data.horizons", "1, 5")
        page.get_by_text("Advanced", exact=True).click()
        fill(page, "data.lookback", "5")
        fill(page, "model.gat_heads", "2")
        fill(page, "model.encoder_heads", "2")
        fill(page, "model.fan_top_k", "2")
        confirm = page.get_by_text("I have read the warnings; launch anyway")
        if confirm.count():
            confirm.click()
            settle(page)
        page.screenshot(path=str(shots / "new_run.png"), full_page=True)
        page.get_by_role("button", name="Launch").click()
        page.get_by_role("heading", name="Run", exact=True).wait_for(timeout=30_000)
        assert "run=" in page.url
        page.get_by_text("completed").first.wait_for(timeout=RUN_TIMEOUT_S * 1000)
        caption = page.get_by_text("val/rank_ic logged for").first
        caption.wait_for(timeout=10_000)
        epochs = int(caption.inner_text().split("logged for ")[1].split(" ")[0])
        assert epochs >= 2
        assert page.get_by_text("Validation RankIC and IC").count() or page.locator(".vega-embed").count()
        page.get_by_text("Evaluation of the best checkpoint").wait_for(timeout=20_000)
        page.screenshot(path=str(shots / "run.png"), full_page=True)
        launched = [p.name for p in runs.iterdir() if not p.name.startswith(".") and p.name != other_id]
        assert len(launched) == 1  # one click, one run

        page.goto(f"{url}/compare")
        page.get_by_role("heading", name="Compare runs").wait_for(timeout=30_000)
        page.get_by_text("model.hidden_size", exact=True).wait_for(timeout=30_000)  # the diff table
        settle(page)
        body = page.locator("body").inner_text()
        assert "Settings that differ" in body and "model.hidden_size" in body
        assert "browser (" in body and "other (" in body  # both runs chosen
        page.screenshot(path=str(shots / "compare.png"), full_page=True)
        browser.close()
