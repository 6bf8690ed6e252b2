"""First render of every page in Chromium against the same page's rerun, median of 5, in one invocation.

Each round starts a fresh `streamlit run app.py` on a demo registry (so every page pays its own imports once) and
opens every page in a new browser session: a different page first each round (so no page is always the one that
pays the shared imports), the others shuffled (seeded by the round). Not a plain rotation: it kept the cyclic order,
so the same pages always came right after Training Jobs, whose visit started the training stack's import in the
server (about 10 s of CPU holding the GIL: their server runs took 0.5-2.9 s of wall time for 0.05-0.1 s of CPU,
load 12), and the median of every round measured them during it. (A visit now starts it only after 3 s on the page,
`views.common.warm_training_stack_on_a_stay`: the bench's visits are shorter, so no round measures it.) For each
page it records:
- first paint: from navigation to the page's title being visible (the frame drawn before any heavy work);
- first render: from navigation to the script run finishing and every element it sent drawn (a table's or a
  chart's code loads after the run has finished: the script state alone came seconds early);
- rerun: the same page rerun in the same session (Streamlit's "R" shortcut), once everything is imported;
- transition: in one session, a click on the page's link in the sidebar (from the page before it in the round's
  order) until the new page's run has finished and every element is drawn. The tour goes
  round twice: "1st switch" is the session's first visit of the page (its elements' code may still load), "switch"
  the second.
A rerun or a transition ends once the script state, watched in the page (a MutationObserver), has left "not
running" and come back, and every element is drawn: no fixed wait, so a fast run is not rounded up.
Each round also starts a bare Streamlit app (a title and a line of text) the same way and opens it the same way:
its first paint is the floor that Streamlit and Chromium alone cost on this machine at this load, so "over floor"
says what the console itself adds, comparable across loads. A second floor is the same page under a navigation of
as many pages as the console's sidebar lists (expanded, with icons): what Streamlit costs to draw that sidebar, which
every page of the console pays before its own content. The floors are plain `streamlit run` servers: they keep
Streamlit's ~40 ms wait for a delayed ACK on each kept-alive request that the console's server (serve.py) turns off,
so a light console page can come in under them.

Each page opens in a fresh browser context (an empty HTTP cache: a browser's first visit), so a page with a table
also downloads and compiles Streamlit's table code (about 1.5 MB of JavaScript) in its first render. `--warm-browser`
measures a user whose browser has opened the console before: one context per round, every page opened once (not
measured: it fills the cache and the server's imports), the server left to finish the imports those visits started
(its CPU quiet: a returning user does not come back in the seconds after a server's first Training Jobs visit), then
each page again in a new tab, a new Streamlit session.
The floor with navigation also gives the transition floor: a click between two of its bare pages.
`--while-training one-process|two-process` measures the pages while the console trains: before each round's server
starts, a long job of the demo retailer adapter (its preset, `max_steps` 100,000) is queued on the registry, data
parallel off (one training process of every core's threads, which the server starts) or on (two single-thread rank
processes); the server's job manager picks it up when a throwaway session opens Training Jobs, and
the round starts once the job has logged its first step. So its pages are measured on a server that has started
(the job has imported the training stack into it), in new sessions, while a job trains; the server's processes,
ranks included, are stopped after each round. The floors' servers run no job. Each checkout's line also says how fast
its job trained (steps/s from its first logged step to the round's end).
`--compare DIR` measures another checkout of the console (say, main before a change: `git worktree add` or `git
archive` it, with its own `.venv` link) in the same rounds, on the same registry, the two servers alternated, and
prints each page's ratio: load hits both alike.
Goal (issue 11): every first render under 1.5 s on an idle machine; the ratio says what the first visit costs
beyond a rerun on whatever machine runs it.

Run: `PYTHONPATH=. .venv/bin/python bench/first_render.py [--rounds 5] [--compare DIR]
[--while-training one-process|two-process]` (or `make bench`).
"""

import argparse
import contextlib
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import httpx
import psutil
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

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
TIMEOUT_MS = int(os.environ.get("BENCH_TIMEOUT_MS", 180_000))


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


def start_server(home: Path, script: str = "serve.py", root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """A server the way `make run` starts it (serve.py: the console and its session routes), from the checkout at
    `root`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RMN_LORA_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}  # fmt: skip
    command = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
               "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false"]  # fmt: skip
    server = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
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


# Counts, in the page itself, the script state's returns to "not running" (a run requested, then finished; a fast
# run can go from "rerun requested" to "not running" without "running" ever reaching the DOM), so a rerun or a page
# switch is over when the count has grown and every element is drawn: a poll from outside could miss a short run.
WATCH_RUNS = """() => {
    window.__runs = 0;
    new MutationObserver(changes => {
        for (const change of changes)
            if (change.oldValue !== 'notRunning' &&
                change.target.getAttribute('data-test-script-state') === 'notRunning') window.__runs += 1;
    }).observe(document.body, {attributes: true, attributeOldValue: true, subtree: true,
                               attributeFilter: ['data-test-script-state']});
}"""
RAN = f"""runs => window.__runs > runs && document.querySelector('{DONE}') !== null &&
    document.querySelector('[data-testid="stStatusWidgetRunningIcon"]') === null && ({DRAWN})()"""


def settle(page) -> None:
    """The first run, whose title is already visible, has finished and every element it sent is drawn."""
    page.wait_for_selector(DONE, timeout=TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached", timeout=TIMEOUT_MS)
    page.wait_for_function(DRAWN, timeout=TIMEOUT_MS, polling=50)


STARTED = """runs => window.__runs > runs ||
    document.querySelector('[data-testid="stApp"]').getAttribute('data-test-script-state') !== 'notRunning'"""


def missed_run(page) -> float:
    """An action that started no run in five tries (93 s) costs its one sample, not the whole bench: NaN, left out
    of the medians, and a screenshot plus the focused element to find out why."""
    shot = Path(tempfile.gettempdir()) / f"first_render-no-run-{int(time.time())}.png"
    page.screenshot(path=shot)
    focus = page.evaluate("() => document.activeElement ? document.activeElement.outerHTML.slice(0, 160) : null")
    print(f"five tries started no run on {page.url}: sample left out (focus {focus!r}; screenshot {shot})",
          file=sys.stderr, flush=True)  # fmt: skip
    return math.nan


def timed_run(page, action) -> float:
    """Seconds from `action` (a key press, a click) to the end of the run it starts, every element drawn. Streamlit
    ignores about one "R" in three pressed just after a run (no rerun is requested): an action that has started no
    run within 3 s is done again, then within 6, 12, 24 and 48 s (a server busy with an import at load 13 once let
    five 3-s tries pass), and the time counts from the one that did; after the fifth the sample is missed."""
    runs = page.evaluate("() => window.__runs")
    for attempt in range(5):
        start = time.perf_counter()
        action()
        try:
            page.wait_for_function(STARTED, arg=runs, timeout=3000 * 2**attempt, polling=16)
            break
        except PlaywrightTimeout:
            continue
    else:
        return missed_run(page)
    page.wait_for_function(RAN, arg=runs, timeout=TIMEOUT_MS, polling=16)
    return time.perf_counter() - start


Sample = tuple[float, float, float, float, float]  # first paint, first render, rerun, 1st switch, switch (seconds)
COLUMNS = ("first paint", "first render", "rerun", "1st switch", "switch")


def link(path: str) -> str:
    """The sidebar's link to a page ('' is the default page, whose link is the app's root)."""
    return f'[data-testid="stSidebarNav"] a[href$="/{path}"]'


def measure_floor(browser, folder: Path, app: str, warm: bool, switch_to: list[str] | None = None) -> Sample:
    """A floor app on its own fresh server: (first paint, first render, rerun, 1st switch, switch). The switches
    (with `switch_to`: its pages' url paths) are medians of clicks through those pages."""
    script = folder / "floor.py"
    script.write_text(app)
    server, url = start_server(folder, str(script))
    try:
        paint, render, rerun = measure_round(browser, url, [""], warm)[""]
        first = again = float("nan")
        if switch_to:
            switches = measure_transitions(browser, url, ["", *switch_to])
            first, again = (statistics.median(column) for column in zip(*switches.values(), strict=True))
        return paint, render, rerun, first, again
    finally:
        server.terminate()
        server.wait(timeout=30)


def open_settled(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.get_by_role("heading", level=1).first.wait_for(timeout=TIMEOUT_MS)
    settle(page)
    page.evaluate(WATCH_RUNS)
    return page


def measure_transitions(browser, url: str, order: list[str], context=None) -> dict[str, tuple[float, float]]:
    """Per page: seconds from a click on its sidebar link, in a session that has the page before it in `order`
    open, to its run's end with every element drawn, on the tour's first and second round. One session (one tab)
    for the whole tour, as a user's."""
    own = context is None
    context = context or browser.new_context(viewport={"width": 1440, "height": 900})
    page = open_settled(context, f"{url}/{order[0]}")
    tour = [*order[1:], order[0]]
    first = {path: timed_run(page, page.locator(link(path)).first.click) for path in tour}
    results = {path: (first[path], timed_run(page, page.locator(link(path)).first.click)) for path in tour}
    page.close()
    if own:
        context.close()
    return results


def wait_until_quiet(server: subprocess.Popen, timeout: float = 120) -> None:
    """Until the server process has used under 5 % of a core for two half-second windows in a row (the imports that
    page visits started in its background threads are done), at most `timeout` seconds."""
    process, quiet, deadline = psutil.Process(server.pid), 0, time.monotonic() + timeout
    while quiet < 2 and time.monotonic() < deadline:
        quiet = quiet + 1 if process.cpu_percent(interval=0.5) < 5 else 0


def measure_round(
    browser, url: str, order: list[str], warm: bool = False, server: subprocess.Popen | None = None
) -> dict[str, tuple[float, float, float]]:
    """Per page: (first paint, first render, rerun) in seconds. Warm: one browser context, its cache filled by a
    visit of every page that is not measured, then the server left to finish what those visits started."""
    results = {}
    shared = browser.new_context(viewport={"width": 1440, "height": 900}) if warm else None
    for path in order if shared is not None else []:
        open_settled(shared, f"{url}/{path}").close()
    if shared is not None and server is not None:
        wait_until_quiet(server)
    for path in order:
        context = shared or browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        start = time.perf_counter()
        page.goto(f"{url}/{path}")
        page.get_by_role("heading", level=1).first.wait_for(timeout=TIMEOUT_MS)
        painted = time.perf_counter() - start
        settle(page)
        rendered = time.perf_counter() - start
        page.evaluate(WATCH_RUNS)
        page.get_by_role("heading", level=1).first.click()  # focus the app (not an input) for the "R" shortcut
        rerun = timed_run(page, partial(page.keyboard.press, "r"))
        results[path] = (painted, rendered, rerun)
        page.close()
        if shared is None:
            context.close()
    if shared is not None:
        shared.close()
    return results


def queue_training(data_parallel: str, number: int) -> str:
    """A long job of the demo retailer adapter queued on the registry for the next server to run (this process's
    job manager runs nothing); its id."""
    from services.demo import DEMO_ADAPTERS
    from services.training import job_manager, submit_training_job

    job_manager().set_concurrency(0)
    adapter_type, dataset, _, preset = DEMO_ADAPTERS["amazon_demo"]
    config = {**preset, "max_steps": 100_000, "save_steps": 100_000, "data_parallel": data_parallel}
    return submit_training_job(adapter_type, f"bench_load_{number}", dataset, config=config)


def start_training(browser, url: str, job_id: str, timeout: float = 600) -> None:
    """Open Training Jobs in a throwaway session (the server's job manager starts and runs the queued job), then
    wait until the job has logged its first step."""
    from services.monitoring import training_curves

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    open_settled(context, f"{url}/training_jobs").close()
    context.close()
    deadline = time.monotonic() + timeout
    while not any(row.get("loss") is not None for row in training_curves([job_id]).get(job_id, [])):
        if time.monotonic() > deadline:
            raise SystemExit(f"the training job {job_id} logged no step in {timeout:.0f} s")
        time.sleep(1)


def stop_server(server: subprocess.Popen) -> None:
    """Terminate the server and whatever it started (a data-parallel job's ranks)."""
    children = psutil.Process(server.pid).children(recursive=True)
    server.terminate()
    server.wait(timeout=30)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def measure_console(
    browser, home: Path, root: Path, order: list[str], warm: bool, training: str | None = None, number: int = 0
) -> dict[str, Sample]:
    """Every page of the checkout at `root` on a fresh server: first renders, reruns, then the transitions; with
    `training` (one-process or two-process), while a job trains."""
    job_id = queue_training("off" if training == "one-process" else "on", number) if training else None
    server, url = start_server(home, root=root)
    try:
        if job_id is not None:
            start_training(browser, url, job_id)
        renders = measure_round(browser, url, order, warm, server)
        switches = measure_transitions(browser, url, order)
        if job_id is not None:
            JOB_RATES.setdefault(str(root), []).append(steps_per_second(job_id))
        return {path: (*renders[path], *switches[path]) for path in order}
    finally:
        stop_server(server)


JOB_RATES: dict[str, list[float]] = {}  # checkout -> the training job's steps/s in each round


def steps_per_second(job_id: str) -> float:
    """The job's optimizer steps per second from its first logged step to now (while the pages were measured)."""
    from services.monitoring import training_curves

    rows = [row for row in training_curves([job_id]).get(job_id, []) if row.get("loss") is not None]
    if len(rows) < 2 or rows[-1]["elapsed"] <= rows[0]["elapsed"]:
        return math.nan
    return (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["elapsed"] - rows[0]["elapsed"])


def medians(samples: list[Sample]) -> Sample:
    """Per column, the median of the samples that were taken (a missed run is NaN); NaN when none was."""
    columns = ([v for v in column if not math.isnan(v)] for column in zip(*samples, strict=True))
    return tuple(statistics.median(values) if values else math.nan for values in columns)


def row(name: str, values: Sample, floor_render: float, flag: str = "") -> str:
    paint, render, rerun, first, again = values
    switches = " ".join(f"{'-' if math.isnan(s) else f'{s:.2f}s':>11}" for s in (first, again))
    return (f"{name:<22} {paint:>10.2f}s {render:>11.2f}s {rerun:>10.2f}s {switches} {render / rerun:>5.1f}x "
            f"{render - floor_render:>9.2f}s{flag}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), metavar="PATH",
                        help="measure only these pages (url paths; '' is Home); default: every page")  # fmt: skip
    parser.add_argument("--warm-browser", action="store_true",
                        help="a browser that has opened the console before (its HTTP cache kept); each page is "
                        "still a new Streamlit session")  # fmt: skip
    parser.add_argument("--compare", type=Path, metavar="DIR",
                        help="another checkout of the console (with its .venv link), measured in the same rounds, "
                        "alternated with this one")  # fmt: skip
    parser.add_argument("--while-training", choices=["one-process", "two-process"],
                        help="measure while a job of the demo retailer adapter trains in the console: in a worker "
                        "thread of the server, or in two rank processes it starts")  # fmt: skip
    args = parser.parse_args()

    paths = list(PAGES) if args.pages is None else args.pages
    roots = {"this checkout": ROOT} | ({f"compare ({args.compare})": args.compare.resolve()} if args.compare else {})
    samples: dict[str, dict[str, list[Sample]]] = {name: {path: [] for path in paths} for name in roots}
    floor: list[Sample] = []
    nav_floor: list[Sample] = []
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        home = Path(folder) / "registry"
        os.environ["RMN_LORA_HOME"] = str(home)
        from services.demo import seed_demo

        seed_demo()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for round_number in range(args.rounds):
            floor.append(measure_floor(browser, Path(folder), FLOOR_APP, args.warm_browser))
            nav_floor.append(measure_floor(browser, Path(folder), NAV_FLOOR_APP, args.warm_browser, ["p1", "p2"]))
            first = paths[round_number % len(paths)]
            order = [first, *random.Random(round_number).sample([p for p in paths if p != first], len(paths) - 1)]
            names = list(roots)[round_number % len(roots) :] + list(roots)[: round_number % len(roots)]
            for number, name in enumerate(names):  # the checkout that goes first alternates
                measured = measure_console(browser, home, roots[name], order, args.warm_browser, args.while_training,
                                           round_number * len(names) + number)  # fmt: skip
                for path, result in measured.items():
                    samples[name][path].append(result)
        browser.close()
    load = os.getloadavg()[0]
    browser_state = "warm browser (cache kept)" if args.warm_browser else "fresh browser context per page"
    training = f", while a {args.while_training} job trains" if args.while_training else ""
    print(f"first render vs rerun, median of {args.rounds} fresh servers, {browser_state}{training} (load average "
          f"{load:.1f} on {os.cpu_count()} cores at the end)")  # fmt: skip
    floor_values, nav_values = medians(floor), medians(nav_floor)
    results = {name: {path: medians(samples[name][path]) for path in paths} for name in roots}
    for name in roots:
        rates = [rate for rate in JOB_RATES.get(str(roots[name]), []) if not math.isnan(rate)]
        print(
            f"\n{name}"
            + (f" (the job trained {statistics.median(rates):.2f} steps/s, median of its rounds)" if rates else "")
        )
        print(f"{'page':<22} {' '.join(f'{c:>11}' for c in COLUMNS)} {'ratio':>6} {'over floor':>10}")
        print(row("(bare Streamlit floor)", floor_values, floor_values[1]))
        print(row("(floor + navigation)", nav_values, floor_values[1]))
        for path in paths:
            values = results[name][path]
            flags = [goal for goal, late in (("render < 1.5 s", values[1] >= 1.5), ("switch < 0.2 s", values[4] >= 0.2)) if late]  # fmt: skip
            print(row(PAGES[path], values, floor_values[1], f"  (goal: {', '.join(flags)})" if flags else ""))
    if args.compare:
        this, other = roots
        print(f"\nratio {this} / {other} (below 1: this checkout is faster)")
        print(f"{'page':<22} {' '.join(f'{c:>11}' for c in COLUMNS)}")
        for path in paths:
            ratios = (a / b for a, b in zip(results[this][path], results[other][path], strict=True))
            print(f"{PAGES[path]:<22} {' '.join(f'{r:>10.2f}x' for r in ratios)}")


if __name__ == "__main__":
    main()
