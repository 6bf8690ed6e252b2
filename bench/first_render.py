"""First render of every page in Chromium against the same page's rerun, median of 5, in one invocation.

Each round starts a fresh `streamlit run app.py` on a demo registry (so every page pays its own imports once) and
opens every page in a new browser session, in an order rotated by one page per round so no page is always the one
that pays the shared imports. For each page it records:
- first paint: from navigation to the page's title being visible (the frame drawn before any heavy work);
- first render: from navigation to the script run finishing and every element it sent drawn (a table's or a
  chart's code loads after the run has finished: the script state alone came seconds early);
- rerun: the same page rerun in the same session (Streamlit's "R" shortcut), once everything is imported.
Each round also starts a bare Streamlit app (a title and a line of text) the same way and opens it the same way:
its first paint is the floor that Streamlit and Chromium alone cost on this machine at this load, so "over floor"
says what the console itself adds, comparable across loads. A second floor is the same page under a navigation of
as many pages as the console's sidebar lists (expanded, with icons): what Streamlit costs to draw that sidebar, which
every page of the console pays before its own content.

Each page opens in a fresh browser context (an empty HTTP cache: a browser's first visit), so a page with a table
also downloads and compiles Streamlit's table code (about 1.5 MB of JavaScript) in its first render. `--warm-browser`
measures a user whose browser has opened the console before: one context per round, every page opened once (not
measured: it fills the cache and the server's imports), then each page again in a new tab, a new Streamlit session.
Goal (issue 11): every first render under 1.5 s on an idle machine; the ratio says what the first visit costs
beyond a rerun on whatever machine runs it.

Run: `PYTHONPATH=. .venv/bin/python bench/first_render.py [--rounds 5]` (or `make bench`).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {  # url path -> name: every page of the navigation (app.py) that an open console shows
    "": "Home",
    "training_jobs": "Training Jobs",
    "train_wizard": "Train Model",
    "adapters": "Adapters",
    "models": "Models",
    "publish": "Publish",
    "evaluations": "Evaluations",
    "federations": "Federation",
    "playground": "Playground",
    "dataset_library": "Dataset Library",
    "schema_mappings": "Schema Mappings",
    "data_browser": "Data Browser",
    "training_metrics": "Training Metrics",
    "performance": "Performance Dashboard",
    "system_health": "System Health",
    "activity": "Activity",
    "settings": "Settings",
    "users": "Users",
}
DONE = '[data-testid="stApp"][data-test-script-state="notRunning"][data-test-connection-state="CONNECTED"]'
TIMEOUT_MS = 180_000


FLOOR_APP = 'import streamlit as st\n\nst.title("Floor")\nst.write("A bare Streamlit page.")\n'
NAV_FLOOR_APP = f"""import streamlit as st

st.set_page_config(page_title="Floor", page_icon=":material/hub:", layout="wide")


def floor():
    st.title("Floor")
    st.write("A bare Streamlit page.")


titles = {[*PAGES.values(), "API tokens"]!r}
pages = [st.Page(floor, title=t, icon=":material/hub:", url_path=f"p{{i}}", default=i == 0) for i, t in enumerate(titles)]
st.navigation({{"": pages[:1], "Section": pages[1:]}}, expanded=True).run()
"""


def start_server(home: Path, script: str = "serve.py") -> tuple[subprocess.Popen, str]:
    """A server the way `make run` starts it (serve.py: the console and its session routes)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RMN_LORA_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}  # fmt: skip
    command = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok":
                return server, url
        except httpx.HTTPError:
            time.sleep(0.25)
    server.kill()
    raise SystemExit("the server did not start")


# Every element is drawn: Streamlit shows a skeleton while an element's code (a table's, a chart's) still loads, and
# a Plotly or metric chart draws its SVG after that. The script state flips to "not running" before any of it: a
# page with two Plotly charts was "done" 3-4 s before they showed (load 8-9).
DRAWN = """() => document.querySelectorAll('[data-testid="stSkeleton"]').length === 0 &&
    [...document.querySelectorAll('[data-testid="stPlotlyChart"], [data-testid="stMetricChart"]')]
        .every(chart => chart.querySelector('svg'))"""


def settle(page) -> None:
    """The script run has finished (the state flips to running within a frame of a rerun request) and every element
    it sent is drawn."""
    page.wait_for_timeout(100)
    page.wait_for_selector(DONE, timeout=TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached", timeout=TIMEOUT_MS)
    page.wait_for_function(DRAWN, timeout=TIMEOUT_MS, polling=50)


def measure_floor(browser, folder: Path, app: str, warm: bool) -> tuple[float, float, float]:
    """A floor app on its own fresh server: (first paint, first render, rerun)."""
    script = folder / "floor.py"
    script.write_text(app)
    server, url = start_server(folder, str(script))
    try:
        return measure_round(browser, url, [""], warm)[""]
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure_round(browser, url: str, order: list[str], warm: bool = False) -> dict[str, tuple[float, float, float]]:
    """Per page: (first paint, first render, rerun) in seconds. Warm: one browser context, its cache filled by a
    visit of every page that is not measured."""
    results = {}
    shared = browser.new_context(viewport={"width": 1440, "height": 900}) if warm else None
    for path in order if shared is not None else []:
        visit = shared.new_page()
        visit.goto(f"{url}/{path}")
        visit.get_by_role("heading", level=1).first.wait_for(timeout=TIMEOUT_MS)
        settle(visit)
        visit.close()
    for path in order:
        context = shared or browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        start = time.perf_counter()
        page.goto(f"{url}/{path}")
        page.get_by_role("heading", level=1).first.wait_for(timeout=TIMEOUT_MS)
        painted = time.perf_counter() - start
        page.wait_for_selector(DONE, timeout=TIMEOUT_MS)
        settle(page)
        rendered = time.perf_counter() - start
        page.get_by_role("heading", level=1).first.click()  # focus the app (not an input) for the "R" shortcut
        start = time.perf_counter()
        page.keyboard.press("r")
        settle(page)
        rerun = time.perf_counter() - start
        results[path] = (painted, rendered, rerun)
        page.close()
        if shared is None:
            context.close()
    if shared is not None:
        shared.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), metavar="PATH",
                        help="measure only these pages (url paths; '' is Home); default: every page")  # fmt: skip
    parser.add_argument("--warm-browser", action="store_true",
                        help="a browser that has opened the console before (its HTTP cache kept); each page is "
                        "still a new Streamlit session")  # fmt: skip
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    paths = list(PAGES) if args.pages is None else args.pages
    samples: dict[str, list[tuple[float, float, float]]] = {path: [] for path in paths}
    floor: list[tuple[float, float, float]] = []
    nav_floor: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        home = Path(folder) / "registry"
        os.environ["RMN_LORA_HOME"] = str(home)
        from services.demo import seed_demo

        seed_demo()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for round_number in range(args.rounds):
            floor.append(measure_floor(browser, Path(folder), FLOOR_APP, args.warm_browser))
            nav_floor.append(measure_floor(browser, Path(folder), NAV_FLOOR_APP, args.warm_browser))
            server, url = start_server(home)
            try:
                shift = round_number % len(paths)
                order = paths[shift:] + paths[:shift]
                for path, result in measure_round(browser, url, order, args.warm_browser).items():
                    samples[path].append(result)
            finally:
                server.terminate()
                server.wait(timeout=30)
        browser.close()
    load = os.getloadavg()[0]
    browser_state = "warm browser (cache kept)" if args.warm_browser else "fresh browser context per page"
    print(f"first render vs rerun, median of {args.rounds} fresh servers, {browser_state} (load average "
          f"{load:.1f} on {os.cpu_count()} cores at the end)")  # fmt: skip
    floor_paint, floor_render, floor_rerun = (statistics.median(column) for column in zip(*floor, strict=True))
    print(f"{'page':<22} {'first paint':>11} {'first render':>12} {'rerun':>8} {'ratio':>6} {'over floor':>10}")
    print(f"{'(bare Streamlit floor)':<22} {floor_paint:>10.2f}s {floor_render:>11.2f}s {floor_rerun:>7.2f}s "
          f"{floor_render / floor_rerun:>5.1f}x {0:>9.2f}s")  # fmt: skip
    nav_paint, nav_render, nav_rerun = (statistics.median(column) for column in zip(*nav_floor, strict=True))
    print(f"{'(floor + navigation)':<22} {nav_paint:>10.2f}s {nav_render:>11.2f}s {nav_rerun:>7.2f}s "
          f"{nav_render / nav_rerun:>5.1f}x {nav_render - floor_render:>9.2f}s")  # fmt: skip
    for path, name in ((path, PAGES[path]) for path in paths):
        painted, rendered, rerun = (statistics.median(column) for column in zip(*samples[path], strict=True))
        flag = "" if rendered < 1.5 else "  (goal: < 1.5 s)"
        print(f"{name:<22} {painted:>10.2f}s {rendered:>11.2f}s {rerun:>7.2f}s {rendered / rerun:>5.1f}x "
              f"{rendered - floor_render:>9.2f}s{flag}")  # fmt: skip


if __name__ == "__main__":
    main()
