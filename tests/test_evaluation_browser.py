"""Real browser: a baseline run's page shows its evaluation (intervals, costs, breakdowns), and
the cost levels typed into the page reach the tables.

Same setup as tests/test_browser.py: `streamlit run app.py` on a free 127.0.0.1 port with tmp
folders, Debian's Chromium through Playwright (never `playwright install`).
"""

from __future__ import annotations

import pytest

from scripts.screenshots import CHROMIUM, fill, free_port, launch_browser, make_demo_data, settle, start_server, stop_server

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
PAGE_TIMEOUT_MS = 60_000


@pytest.fixture
def server(tmp_path):
    from atft_core.config import RunConfig
    from atft_core.train import run_training

    data, runs = tmp_path / "data", tmp_path / "runs"
    dataset = make_demo_data(data)
    base = RunConfig().replace(**{"data.path": str(dataset), "data.lookback": 5, "model.fan_top_k": 2})
    assert run_training(base.replace(**{"model.kind": "reversal_1d"}), runs / "reversal") == "completed"
    port = free_port()
    proc = start_server(data, runs, port, tmp_path / "server.log")
    yield f"http://127.0.0.1:{port}", tmp_path
    stop_server(proc)


def test_baseline_page_shows_costs_and_breakdowns_in_a_real_browser(server):
    url, tmp = server
    with sync_api.sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 4000})
        page.goto(f"{url}/run?run=reversal")
        page.get_by_role("heading", name="Checkpoints").wait_for(timeout=PAGE_TIMEOUT_MS)   # the page's last part
        settle(page)
        for text in ("A baseline (", "Break-even cost", "Mean holding period", "mean daily RankIC",
                     "Sector33 table", "Against a baseline"):   # waited for: tabs fill in after the text around them
            page.get_by_text(text).first.wait_for(timeout=PAGE_TIMEOUT_MS)
        body = page.locator("body").inner_text()
        assert "Resume" not in body and "not logged yet" not in body
        page.locator(".vega-embed").first.wait_for(timeout=PAGE_TIMEOUT_MS)    # charts load after the text
        page.wait_for_function("document.querySelectorAll('.vega-embed').length >= 6", timeout=PAGE_TIMEOUT_MS)
        fill(page, "Trading costs (bp per side)", "0, 50")
        page.get_by_text("net return at 50 bp (bp/day)").first.wait_for(state="attached", timeout=PAGE_TIMEOUT_MS)
        page.screenshot(path=str(tmp / "baseline_page.png"), full_page=True)
        browser.close()
