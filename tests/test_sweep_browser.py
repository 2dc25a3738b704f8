"""Real browser: define a 3-trial sweep on the Sweep page, watch it finish, open the best on Compare.

Same set-up as tests/test_browser.py: `streamlit run app.py` on a free 127.0.0.1 port with tmp
data/runs folders, Debian's Chromium through Playwright's sync API. Trials are tiny (hidden 8,
lookback 5, two epochs, horizons 1 and 5) on two CPU slots set from the page.
"""

from __future__ import annotations

import pytest

from atft_core.sweep.storage import default_url
from atft_core.sweep.trials import live_workers, read_study
from scripts.screenshots import (CHROMIUM, fill, fill_tiny, free_port, launch_browser, make_demo_data, settle,
                                 start_server, stop_server)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
SWEEP_TIMEOUT_MS = 400_000


@pytest.fixture
def server(tmp_path):
    data, runs = tmp_path / "data", tmp_path / "runs"
    make_demo_data(data)
    port = free_port()
    proc = start_server(data, runs, port, tmp_path / "server.log")
    yield f"http://127.0.0.1:{port}", runs
    stop_server(proc)


def test_a_three_trial_sweep_in_a_real_browser(server):
    url, runs = server
    with sync_api.sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/sweep")
        page.get_by_role("heading", name="Sweep").wait_for(timeout=30_000)
        page.get_by_text("Base config", exact=True).wait_for(timeout=30_000)   # no study yet: the page defines one
        page.get_by_role("combobox", name="train.mode").click()   # eight days a step: seconds an epoch
        page.get_by_role("option", name="optimized", exact=True).click()
        settle(page)
        fill_tiny(page)
        fields = page.get_by_role("combobox", name="Fields to search")
        fields.click()
        fields.fill("train.lr")
        page.get_by_role("option", name="train.lr", exact=True).click()
        fields.press("Escape")   # closes the list
        settle(page)
        page.get_by_label("train.lr: range low..high (options :log, :step=N) or list a|b|c", exact=True).wait_for(timeout=10_000)
        fill(page, "Study name", "browser")
        fill(page, "Trials", "3")
        fill(page, "Trials at once", "2")
        fill(page, "CPU slots of this machine's queue", "2")
        force = page.get_by_text("Launch the trials despite the warnings")
        if force.count():
            force.click()
            settle(page)
        page.get_by_role("button", name="Create and start a worker").click()
        page.get_by_text("Finished: every one of the 3 trials has ended.").wait_for(timeout=SWEEP_TIMEOUT_MS)

        view = read_study("browser", default_url(runs))
        assert [t.state for t in view.trials] == ["complete"] * 3 and view.best is not None
        page.get_by_text("Optimisation history (line: best so far)").first.wait_for(timeout=10_000)
        page.get_by_text("Compare the best 3").click()   # K is 3 at first
        page.get_by_role("heading", name="Compare runs").wait_for(timeout=30_000)
        assert "runs=" in page.url
        page.get_by_text("Settings that differ").wait_for(timeout=30_000)
        browser.close()
    assert not live_workers(runs, "browser")   # the worker exits when the study is done
