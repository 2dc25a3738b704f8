"""Screenshot every dashboard page into docs/screenshots/*.png.

    python scripts/screenshots.py [--out docs/screenshots] [--only sweep,run]

Makes a small demo dataset, two tiny finished runs and a finished 8-trial sweep of tiny trials in
a temporary folder, serves the app on
a free 127.0.0.1 port and drives Debian's Chromium (/usr/bin/chromium) through Playwright's
sync API: the same setup as tests/test_browser.py, which imports the helpers below.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: import the project's atft_core
    sys.path.insert(0, str(REPO))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SERVER_START_S = 30
RUN_TIMEOUT_S = 300   # generous: a tiny run beside other test processes on 2 cores takes 20-60 s
VIEWPORT = {"width": 1280, "height": 900}
TALL_VIEWPORT = {"width": 1280, "height": 1900}
DEMO = {"n_stocks": 40, "n_days": 260, "seed": 0}
TINY = {"data": {"lookback": 5, "horizons": [1, 5]},
        "model": {"hidden_size": 8, "gat_heads": 2, "encoder_heads": 2, "fan_top_k": 2},
        "train": {"phase_epochs": [1, 1, 0, 0]}}
"""A run that trains in seconds on the DEMO market (the browser test types the same values)."""
PAGES = {"new_run": "Pre-flight checks", "run": "Evaluation of the best checkpoint", "compare": "Settings that differ",
         "predict": "Download the ranking (CSV)", "data": "Generate a synthetic demo dataset", "system": "Running runs",
         "sweep": "Parameter importances"}
"""Page url path -> a text drawn last on that page (the screenshot waits for it)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(data: Path, runs: Path, port: int, log: Path) -> subprocess.Popen:
    """`streamlit run app.py` bound to 127.0.0.1 in its own process group; waits for health."""
    env = {**os.environ, "ATFT_DATA_DIR": str(data), "ATFT_RUNS_DIR": str(runs)}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + SERVER_START_S
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"streamlit did not start in {SERVER_START_S} s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(timeout=20)


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def settle(page) -> None:
    """Wait until Streamlit has finished the rerun a widget change triggered."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=30_000)


def fill(page, label: str, value: str) -> None:
    """Type into the input labelled `label` and commit it (Enter), then wait for the rerun."""
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    settle(page)


def fill_tiny(page) -> None:
    """Type TINY's settings into the config form (New run, or the Sweep page's base config)."""
    fill(page, "model.hidden_size", "8")
    fill(page, "train.phase_epochs", "1, 1, 0, 0")
    fill(page, "data.horizons", "1, 5")
    page.get_by_text("Advanced", exact=True).click()
    fill(page, "data.lookback", "5")
    fill(page, "model.gat_heads", "2")
    fill(page, "model.encoder_heads", "2")
    fill(page, "model.fan_top_k", "2")


def make_demo_data(data: Path) -> Path:
    from atft_core.config import RunConfig
    from atft_core.data.demo import make_demo

    data.mkdir(parents=True, exist_ok=True)
    out = data / Path(RunConfig().data.path).name
    make_demo(out, **DEMO)
    return out


def launch_tiny(dataset: Path, runs: Path, name: str, hidden: int) -> str:
    """Start a tiny run through the launcher (as the New run page does); returns its id."""
    from atft_core.config import RunConfig
    from atft_core.runs.queue import launch_run

    values = {**TINY, "data": {**TINY["data"], "path": str(dataset)}, "model": {**TINY["model"], "hidden_size": hidden}}
    return launch_run(RunConfig.from_dict(values), runs, name=name, tags=("demo",), force=True)


def wait_finished(runs: Path, run_ids: list[str], timeout: float = RUN_TIMEOUT_S) -> None:
    from atft_core.runs import run_state

    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(not run_state(runs, r).live for r in run_ids):
            return
        time.sleep(1.0)
    raise TimeoutError(f"runs {run_ids} still live after {timeout} s:\n{describe_runs(runs)}")


def describe_runs(runs: Path, log_lines: int = 15) -> str:
    """What a waiting test saw of `runs`: each run's state and reason, the tail of its train.log,
    the queue's jobs and the dispatcher's log (a timeout then says why, not only that)."""
    from atft_core.runs import list_runs
    from atft_core.runs.jobs import QUEUE_DIR

    def tail(path: Path) -> str:
        lines = path.read_text(errors="replace").splitlines()[-log_lines:] if path.is_file() else ["(no file)"]
        return "\n".join("    " + line for line in lines)

    parts = []
    for run in list_runs(runs, compact=False):
        parts.append(f"run {run.id} ({run.name}): {run.status} {run.phase_name!r} {run.reason!r}")
        parts.append(tail(runs / run.id / "train.log"))
    for queue in sorted((runs / QUEUE_DIR).glob("*")):
        for job in sorted(queue.glob("*/*.json")):
            parts.append(f"job {job.relative_to(queue)}: {job.read_text()[:400]}")
        parts.append(f"dispatcher.log of {queue.name}:\n{tail(queue / 'dispatcher.log')}")
    return "\n".join(parts)


def demo_sweep(dataset: Path, runs: Path) -> None:
    """An 8-trial study of tiny trials (learning rate and hidden size searched), run to its end by
    one worker on two CPU slots, as `python -m atft_core.sweep` does it."""
    base = [f"--data.path={dataset}", "--data.lookback=5", "--data.horizons=1,5", "--model.fan_top_k=2",
            "--model.gat_heads=2", "--model.encoder_heads=2", "--train.phase_epochs=1,1,0,0", "--train.mode=optimized"]
    sweep = [sys.executable, "-m", "atft_core.sweep", "--runs-dir", str(runs)]
    subprocess.run([*sweep, "create", "demo", *base, "--param", "train.lr=1e-4..1e-1:log", "--param",
                    "model.hidden_size=8|16|32", "--trials", "8", "--parallel", "2", "--pruner", "none"],
                   cwd=REPO, check=True, capture_output=True)
    subprocess.run([*sweep, "run", "demo", "--slots", "2", "--threads", "1"], cwd=REPO, check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--only", default=",".join(PAGES), help="comma-separated pages (default: all)")
    args = parser.parse_args(argv)
    pages = {p: PAGES[p] for p in args.only.split(",")}
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="atft-shots-") as tmp:
        data, runs = Path(tmp) / "data", Path(tmp) / "runs"
        dataset = make_demo_data(data)
        ids = [launch_tiny(dataset, runs, "hidden-8", 8), launch_tiny(dataset, runs, "hidden-16", 16)]
        wait_finished(runs, ids)
        if "sweep" in pages:
            demo_sweep(dataset, runs)
        proc = start_server(data, runs, port := free_port(), Path(tmp) / "server.log")
        try:
            with sync_playwright() as pw:
                browser = launch_browser(pw)
                page = browser.new_page(viewport=VIEWPORT)
                for path, last_text in pages.items():
                    route = "" if path == "new_run" else path  # the default page lives at /
                    # Streamlit scrolls inside the page: a taller window shows the Sweep page's charts.
                    page.set_viewport_size(TALL_VIEWPORT if path == "sweep" else VIEWPORT)
                    page.goto(f"http://127.0.0.1:{port}/{route}?run={ids[0]}&study=demo")
                    page.get_by_text(last_text, exact=True).first.wait_for(timeout=60_000)
                    settle(page)
                    page.wait_for_timeout(1500)  # let Vega draw
                    page.screenshot(path=str(out / f"{path}.png"))
                    print(f"wrote {out / f'{path}.png'}")
                browser.close()
        finally:
            stop_server(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
