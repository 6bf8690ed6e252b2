"""End-to-end harness: a real Streamlit server on a seeded temp registry, driven by Debian chromium via Playwright.

Everything here is marked `browser`, so `make test` (-m "not browser") skips it and `make test-browser` runs it.
Playwright's own browser downloads are never used: chromium comes from apt (`/usr/bin/chromium`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from console_server import ConsoleServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags chromium keeps dialling out, and this machine's closed network refuses it.
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
PAGE_TIMEOUT_MS = 30_000
BROWSER_TEST_TIMEOUT_S = 300
# The open page and where its failure screenshot goes, kept on the test item for the report hook.
PAGE_KEY = pytest.StashKey[tuple[object, Path]]()
BROWSER_DIR = Path(__file__).resolve().parent
# Every server's log this session, so a failure report can show what the server said (CI keeps only the output).
SERVER_LOGS: list[Path] = []
LOG_TAIL_LINES = 40


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser, and bound it so a hung browser cannot stall CI."""
    for item in items:
        if BROWSER_DIR in item.path.parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On a failed test, screenshot the page while it is still open and put in the failure report what a CI log
    must hold to explain the failure without the files: the page's text and the tails of the servers' logs."""
    report = yield
    open_page = item.stash.get(PAGE_KEY, None)
    if report.when == "call" and report.failed and open_page is not None:
        page, shot = open_page
        try:
            page.screenshot(path=str(shot), full_page=True)
            report.sections.append(("browser screenshot", f"saved to {shot}"))
            report.sections.append(("page text", page.locator("body").inner_text(timeout=5_000)))
        except Exception as error:  # a crashed page must not hide the test's own failure
            report.sections.append(("browser screenshot", f"could not be taken: {error}"))
    if report.when == "call" and report.failed:
        for log in SERVER_LOGS:
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
                report.sections.append((f"server log {log.name} (last {LOG_TAIL_LINES} lines)", "\n".join(tail)))
    return report


def wait_for_streamlit(page, timeout_ms: int = PAGE_TIMEOUT_MS) -> None:
    """Wait until the app is connected and its script has finished a run (Streamlit 1.67's stApp data attributes)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-connection-state="CONNECTED"]', timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached", timeout=timeout_ms)
    # A rerun triggered just before this call may not have flipped the state yet; give it one frame-ish to show up.
    page.wait_for_timeout(150)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms)


@pytest.fixture(name="wait_for_streamlit", scope="session")
def wait_for_streamlit_fixture() -> Callable[..., None]:
    """The `wait_for_streamlit(page)` helper, as a fixture so tests need not import a conftest module."""
    return wait_for_streamlit


# How many pixels of an element's widest scrolling part are out of sight: a table wider than its box hides columns.
HIDDEN_WIDTH = """element => Math.max(0, ...Array.from(element.querySelectorAll('*'))
    .filter(e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
    .map(e => e.scrollWidth - e.clientWidth))"""


@pytest.fixture(name="hidden_width", scope="session")
def hidden_width_fixture() -> Callable[[object], int]:
    """`hidden_width(locator)`: the pixels of a table (or any box) that its width cuts off; 0 when all is visible."""
    return lambda locator: locator.evaluate(HIDDEN_WIDTH)


@pytest.fixture(scope="session")
def console_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp registry, seeded with the demo data when `services.demo.seed_demo` exists."""
    home = tmp_path_factory.mktemp("console-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(home))
        if importlib.util.find_spec("services.demo") is not None:
            from services import demo

            seed = getattr(demo, "seed_demo", None)
            if seed is not None:
                seed()
    return home


@pytest.fixture(scope="session")
def console_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding a tiny local base model, so browser tests train in seconds."""
    from tiny_model import build_tiny_model

    models = tmp_path_factory.mktemp("console-models")
    build_tiny_model(models / "tiny-llama")
    return models


@pytest.fixture(scope="session")
def console_url(console_home: Path, console_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `streamlit run serve.py` on a free loopback port against the temp registry; stop it after the session."""
    server = ConsoleServer(console_home, console_models, tmp_path_factory.mktemp("streamlit") / "server.log")
    SERVER_LOGS.append(server.log_path)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def console_server(console_models: Path, tmp_path: Path) -> Iterator[Callable[[Path], ConsoleServer]]:
    """Start servers of one's own (e.g. to restart one on the same registry); each is stopped after the test."""
    servers: list[ConsoleServer] = []

    def start(home: Path) -> ConsoleServer:
        servers.append(ConsoleServer(home, console_models, tmp_path / f"server-{len(servers)}.log"))
        SERVER_LOGS.append(servers[-1].log_path)
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
            SERVER_LOGS.remove(server.log_path)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """One Debian chromium for the whole session; each test gets its own context."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium (Playwright's browser downloads are not used)")
    from playwright.sync_api import expect, sync_playwright

    # expect()'s own default is 5 s, the page's is 30 s: a loaded machine draws late; an expect returns when it holds
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A fresh page (own cookies and storage) with a 30 s default timeout; screenshotted if the test fails."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    request.node.stash[PAGE_KEY] = (page, tmp_path / "failure.png")
    try:
        yield page
    finally:
        del request.node.stash[PAGE_KEY]
        context.close()


@pytest.fixture(scope="session")
def federation_adapters(
    console_home: Path, console_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> list[str]:
    """A retailer adapter ('mapper') and a task adapter ('planner') really trained on the tiny base model in the
    console's registry (80 steps: their answers are readable in the README screenshot). Request it before
    `console_url`, so they are there when the server starts."""
    from test_federation_pages import train_tiny_adapters

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(console_home))
        patch.setenv("RMN_LORA_MODELS", str(console_models))
        train_tiny_adapters("tiny-llama", tmp_path_factory.mktemp("federation-jobs"), steps=80)
    return ["mapper", "planner"]
