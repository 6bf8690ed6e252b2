"""The Federation page's A/B with side B on a serving endpoint: a real OpenAI-compatible server (this console's own
API, `python -m api`, in its own process on a loopback port, over the same registry) serves the saved federation,
and the page answers the same prompts with the federation here (A) and over HTTP (B). Greedy decoding: B's answers
must be A's, and the server's access log must show one chat completion per prompt."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from console_server import REPO_ROOT, free_port
from playwright.sync_api import Page, expect

from tests.browser.widgets import choose

FIRST_VISIT_MS = 120_000  # a page's first run imports torch, transformers and PEFT, slow on a loaded 2-core box
RUN_MS = 240_000  # both sides load the tiny model on their first prompt (the API in its own process)
PROMPTS = [
    "Map field 'adType' with value 'sp' from Amazon to RMIS.",
    "Plan a $5,000 campaign for a snack brand.",
]


@pytest.fixture
def api_url(console_home: Path, console_models: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`python -m api` on a free loopback port against the console's registry; (its URL, its log). A port taken
    between free_port() and the server's bind ("address already in use") is replaced by another, twice at most."""
    log_path = tmp_path / "api.log"
    env = {
        **os.environ,
        "RMN_LORA_HOME": str(console_home),
        "RMN_LORA_MODELS": str(console_models),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for attempt in range(3):
        port, start = free_port(), log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "api", "--port", str(port)],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        url = f"http://127.0.0.1:{port}"
        if _answers(server, url, log_path, start, last_attempt=attempt == 2):
            break
    try:
        yield url, log_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _answers(server: subprocess.Popen, url: str, log_path: Path, start: int, last_attempt: bool) -> bool:
    """Wait until the API answers (True), or it exited because its port was taken meanwhile (False)."""
    deadline = time.monotonic() + 180  # generous: it imports the inference stack, slow on a loaded 2-core box
    while True:
        if server.poll() is not None:
            log = log_path.read_bytes()[start:].decode(errors="replace")
            if "address already in use" in log and not last_attempt:
                return False
            pytest.fail(f"the API exited:\n{log}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.terminate()
            pytest.fail(f"the API did not answer:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.5)


def side(page: Page, name: str):
    return page.locator(f".st-key-ab_{name}_side")


def table_rows(page: Page) -> list[list[str]]:
    """The A/B table's cells, row by row (its accessible grid), without the header."""
    grid = page.get_by_test_id("stDataFrame").filter(has_text="B response")
    rows = grid.locator('[role="row"]').filter(has=page.locator('[role="gridcell"]'))
    return [row.locator('[role="gridcell"]').all_inner_texts() for row in rows.all()]


def test_ab_compares_a_saved_federation_with_the_same_federation_on_an_endpoint(
    federation_adapters, console_home, console_url, api_url, browser_page, wait_for_streamlit, tmp_path: Path
):
    url, api_log = api_url
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(console_home))
        from services.deploy import ServingEndpoint, delete_endpoint, save_endpoint
        from services.federation import compose_federation, delete_federation, save_federation

        save_endpoint(ServingEndpoint(name="local-api", url=url, engine="console"))
        federation = save_federation(compose_federation(adapters=["mapper"], name="mapper alone"))
    try:
        page, wait = browser_page, wait_for_streamlit
        page.goto(f"{console_url}/federations")
        wait(page, FIRST_VISIT_MS)
        page.get_by_role("tab").filter(has_text="A/B").click()
        wait(page)
        a, b = side(page, "a"), side(page, "b")
        a.get_by_text("Saved federation", exact=True).click()
        wait(page)
        choose(page, wait, "Federation A", f"mapper alone · {federation.id}", scope=a)
        b.get_by_text("Serving endpoint", exact=True).click()
        wait(page)
        choose(page, wait, "Endpoint", "local-api", scope=b)
        choose(page, wait, "Model", federation.id, scope=b)  # the same federation, served by the API
        prompts = page.get_by_role("textbox", name="Prompts, one per line")
        prompts.fill("\n".join(PROMPTS))
        prompts.press("Control+Enter")
        wait(page)
        page.get_by_test_id("stExpander").filter(has_text="Generation settings").last.get_by_text(
            "Generation settings"
        ).click()
        tokens = page.get_by_role("spinbutton", name="Max new tokens").last
        tokens.fill("16")
        tokens.press("Enter")
        wait(page)
        page.get_by_role("button").filter(has_text="Run A/B").click()  # a "/" cannot be in a name regex
        expect(page.get_by_test_id("stDataFrame").filter(has_text="B response")).to_be_visible(timeout=RUN_MS)
        wait(page)
        assert page.get_by_test_id("stException").count() == 0
        titles = page.get_by_role(
            "strong"
        )  # each side's card is titled with its label (as is the latency chart's legend)
        expect(titles.filter(has_text=f"B: {federation.id} on local-api (endpoint)")).to_be_visible()
        expect(titles.filter(has_text=f"A: mapper alone · {federation.id}")).to_be_visible()
        rows = table_rows(page)
        assert [row[0] for row in rows] == PROMPTS
        for prompt, answer_a, answer_b, *_ in rows:
            assert answer_a.strip(), f"A gave no answer to {prompt!r}"
            assert answer_b == answer_a, f"the endpoint answered {prompt!r} otherwise than the federation here"
        served = re.findall(r'"POST /v1/chat/completions HTTP/1.1" 200', api_log.read_text(errors="replace"))
        assert len(served) == len(PROMPTS), "one chat completion per prompt reached the server"
        page.set_viewport_size({"width": 1440, "height": 2600})
        wait(page)
        page.get_by_test_id("stTabs").screenshot(path=str(tmp_path / "federation_ab_endpoint.png"))
        print(f"screenshot: {tmp_path / 'federation_ab_endpoint.png'}")
    finally:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("RMN_LORA_HOME", str(console_home))
            delete_federation(federation.id)  # the other browser tests start from no saved federation
            delete_endpoint("local-api")
