"""Real browser: launch a tiny demo run from New run, follow it to the end, compare two runs.

Starts `streamlit run app.py` on a free 127.0.0.1 port with tmp data/runs folders and drives
Debian's Chromium through Playwright's sync API (never `playwright install`). Asserts on page
text, not pixels; screenshots go to a temporary folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atft_core.runs.launch import stop_run

from scripts.screenshots import (CHROMIUM, REPO, RUN_TIMEOUT_S, TINY, describe_runs, fill, fill_tiny, free_port,
                                 launch_browser, launch_tiny, make_demo_data, settle, start_server, stop_server,
                                 wait_finished)

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
        outside: list[str] = []   # the app must work offline: every request goes to this server
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(url) and
                not r.url.startswith(("data:", "blob:")) else None)
        errors: list[str] = []   # a blank page (Streamlit's frontend failed) says why here
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.get_by_role("heading", name="New run").wait_for(timeout=30_000)
        fill(page, "Run name", "browser")
        fill_tiny(page)
        confirm = page.get_by_text("I have read the warnings; launch anyway")
        if confirm.count():
            confirm.click()
            settle(page)
        page.screenshot(path=str(shots / "new_run.png"), full_page=True)
        page.get_by_role("button", name="Launch").click()
        page.get_by_role("heading", name="Run", exact=True).wait_for(timeout=30_000)
        assert "run=" in page.url
        status = page.locator('[data-testid="stMetric"]').filter(has_text="Status")
        wait_for(status.get_by_text("completed", exact=True), "Status completed", page, runs, tmp, errors)
        caption = page.get_by_text("val/rank_ic logged for").first
        caption.wait_for(timeout=10_000)
        epochs = int(caption.inner_text().split("logged for ")[1].split(" ")[0])
        assert epochs >= 2
        assert page.get_by_text("Validation RankIC and IC").count() or page.locator(".vega-embed").count()
        page.get_by_text("Evaluation of the best checkpoint").wait_for(timeout=20_000)
        page.screenshot(path=str(shots / "run.png"), full_page=True)
        launched = [p.name for p in runs.iterdir() if not p.name.startswith(".") and p.name != other_id]
        assert len(launched) == 1  # one click, one run

        wait_finished(runs, [other_id])   # started first, but a busy machine may still be training it
        page.goto(f"{url}/compare")
        page.get_by_role("heading", name="Compare runs").wait_for(timeout=30_000)
        page.get_by_text("model.hidden_size", exact=True).wait_for(timeout=30_000)  # the diff table
        settle(page)
        assert "Settings that differ" in page.locator("body").inner_text()
        chosen = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Runs (finished ones are chosen first)")
        for label in ("browser · completed", "other · completed"):   # both finished runs are chosen
            chosen.get_by_text(label).first.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "compare.png"), full_page=True)

        for path, heading in (("predict", "Predict"), ("system", "System"), ("data", "Data")):
            page.goto(f"{url}/{path}")
            page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=30_000)
            settle(page)
        (tmp / "quotes.csv").write_text("Code,Date\n1301,2024-01-04\n")
        page.locator('input[type="file"]').first.set_input_files(str(tmp / "quotes.csv"))  # the uploader's icons
        page.get_by_text("quotes.csv").first.wait_for(timeout=10_000)
        settle(page)
        assert outside == [], f"requests off {url}: {outside}"
        assert errors == [], errors
        browser.close()


def wait_for(locator, what: str, page, runs: Path, tmp: Path, errors: list[str],
             timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Wait for `locator` to show; a timeout says what the page, the runs, the queue and the
    server showed (a run that never ends on CI is otherwise a bare "Timeout exceeded")."""
    try:
        locator.wait_for(timeout=timeout_s * 1000)
    except sync_api.TimeoutError:
        page.screenshot(path=str(tmp / "timed_out.png"), full_page=True)
        server_log = (tmp / "server.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"no {what} on {page.url} after {timeout_s} s (screenshot {tmp / 'timed_out.png'}).\n"
                             f"The page says: {page.locator('body').inner_text(timeout=5_000)[:1500]}\n"
                             f"Errors in the page: {errors}\n"
                             f"{describe_runs(runs)}\nserver.log ends:\n{server_log}") from None


def launch_with_cli(dataset: Path, runs: Path, tmp: Path, name: str, epochs: list[int]) -> str:
    """A tiny run started by `python -m atft_core.runs launch`, as from a shell: the app that
    stops it is not the process that started it."""
    config = tmp / f"{name}.json"
    config.write_text(json.dumps({**TINY, "data": {**TINY["data"], "path": str(dataset)},
                                  "train": {**TINY["train"], "phase_epochs": epochs}}))
    out = subprocess.run([sys.executable, "-m", "atft_core.runs", "--runs-dir", str(runs), "launch", "--config",
                          str(config), "--name", name, "--force"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.strip()


def metric_value(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def run_selector_text(page) -> str:
    return page.get_by_role("combobox", name="Run").input_value()


def button(page, name: str):
    """A button of the page itself (the toolbar has a "Stop" of its own while a script runs)."""
    return page.locator('[data-testid="stMain"]').get_by_role("button", name=name, exact=True)


def visible_buttons(page, names: tuple[str, ...]) -> list[str]:
    """Which of `names` the page's own buttons show, read in ONE snapshot of the page: two
    separate queries can see one button before and after it changed its label (Stop -> Resume),
    and report both."""
    shown = page.locator('[data-testid="stMain"] button').all_inner_texts()
    return [n for n in names if n in (text.strip() for text in shown)]


def wait_until(page, check, timeout_s: float, what: str, every_ms: int = 100, watch=None):
    """Poll `check()` until truthy; `watch()` runs at every poll (an invariant to assert)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if watch is not None:
            watch()
        value = check()
        if value:
            return value
        page.wait_for_timeout(every_ms)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; the page says: "
                         f"{page.locator('[data-testid=stMain]').inner_text()[:1000]}")


def test_run_page_follows_the_live_state_and_stop_resume_never_show_together(server):
    """Issue 17 defects 10 and 11, in a real browser with the real fragment refresh: the page is
    opened while the run is queued and never reloaded."""
    url, dataset, runs, tmp = server
    run_id = launch_with_cli(dataset, runs, tmp, "long", epochs=[60, 0, 0, 0])
    seen: list[str] = []

    def never_both() -> None:
        shown = visible_buttons(page, ("Stop", "Resume"))
        seen.append(",".join(shown))
        assert len(shown) < 2, f"Stop and Resume shown together after {seen[-5:]}"

    def consistent() -> bool:
        status = metric_value(page, "Status")
        return status if f"· {status} ·" in run_selector_text(page) else ""

    try:
        with sync_api.sync_playwright() as pw:
            browser = launch_browser(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/run?run={run_id}")
            page.get_by_role("heading", name="Run", exact=True).wait_for(timeout=30_000)
            wait_until(page, lambda: metric_value(page, "Epoch").split(" / ")[0] not in ("0", ""), RUN_TIMEOUT_S,
                       "the first epoch", every_ms=300)
            wait_until(page, lambda: not page.get_by_text("config.json is written when the trainer starts").count()
                       and not page.get_by_text("No checkpoints yet").count()
                       and page.get_by_role("button", name="Download last.pt").count(), 10, "config and checkpoints")
            assert wait_until(page, consistent, 10, "the selector to say what Status says") == "running"
            button(page, "Stop").click()
            wait_until(page, lambda: metric_value(page, "Status") == "stopped"
                       and visible_buttons(page, ("Resume",)), 90, "stopped, with Resume", watch=never_both)
            button(page, "Resume").click()

            def no_seed_group_note() -> None:
                never_both()
                assert not page.get_by_text("a seed group trains one run at a time").count()

            wait_until(page, lambda: metric_value(page, "Status") == "running", 90, "running again", watch=no_seed_group_note)
            assert wait_until(page, consistent, 10, "the selector to follow the resume") == "running"
            browser.close()
    finally:
        stop_run(runs, run_id, grace_seconds=30)
