"""Compose a gated federation of two really trained tiny adapters, see its stack, run a prompt, save it; run a prompt
on one adapter in the Playground and find it in the history; then delete and clear, through their confirmations."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.widgets import choose

RUN_TIMEOUT_MS = 120_000  # the first run loads the base model and both adapters
# On a busy machine `wait_for_streamlit` can return before a slow rerun (composing, saving) has even started, so
# each slow action waits for its own evidence this long before the checks that follow (Playwright's default is 5 s).
STEP_MS = 30_000
FIRST_VISIT_MS = 120_000  # a page's first run imports torch, transformers and PEFT, slow on a loaded 2-core box
FULL_PAGE = {"width": 1440, "height": 2400}  # Streamlit scrolls inside the app, so a full-page shot needs a tall view


def open_page(page: Page, wait: Callable[..., None], title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    wait(page, FIRST_VISIT_MS)
    assert_no_exception(page)


def assert_no_exception(page: Page) -> None:
    assert page.get_by_test_id("stException").count() == 0, "the page shows a Streamlit exception (traceback)"


def pick_radio(page: Page, wait: Callable[[Page], None], label: str, option: str) -> None:
    page.get_by_test_id("stRadio").filter(has_text=label).get_by_text(option, exact=True).click()
    wait(page)


def metric(page: Page, label: str) -> Locator:
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return card.get_by_test_id("stMetricValue")


def screenshot(page: Page, wait: Callable[[Page], None], path: Path) -> None:
    """The whole page (for the README and for a person judging the layout), then back to the normal viewport."""
    viewport = page.viewport_size
    page.set_viewport_size(FULL_PAGE)
    page.wait_for_timeout(500)
    wait(page)
    page.screenshot(path=str(path))
    page.set_viewport_size(viewport)
    print(f"screenshot: {path}")


def answer_text(box: Locator) -> str:
    """The streamed answer in a response box, without the box's own heading."""
    return box.inner_text().replace("Response", "", 1).strip()


@pytest.mark.timeout(600)  # includes training the two adapters (session fixture) on a possibly busy machine
def test_compose_gated_run_save_then_playground_history(
    federation_adapters, console_url, browser_page, wait_for_streamlit, hidden_width, tmp_path: Path
):
    page, wait = browser_page, wait_for_streamlit
    page.goto(console_url)
    wait(page)
    open_page(page, wait, "Federation")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Federation & Composition")

    choose(page, wait, "Retailer adapter", "mapper v1 · retailer · r4")
    choose(page, wait, "Task adapter", "planner v1 · task · r8")
    pick_radio(page, wait, "Composition method", "Gated")
    name = page.get_by_role("textbox", name="Federation name")
    name.fill("browser gated")
    name.press("Enter")
    wait(page)
    page.get_by_role("button", name=re.compile(r"Create Federation$")).click()
    expect(page.get_by_test_id("stToast").filter(has_text="Composed browser gated")).to_be_visible(timeout=STEP_MS)
    wait(page)
    assert_no_exception(page)
    for box in ("Base model: tiny-llama", "Retailer: mapper v1", "Task: planner v1", "Federated (Ready)"):
        expect(page.locator(".fed-box").filter(has_text=box)).to_be_visible()
    expect(page.locator(".fed-box").filter(has_text="Retailer: mapper v1")).to_contain_text("rank=4")
    expect(metric(page, "Router accuracy")).to_have_text(re.compile(r"^\d+%$"))
    router = page.get_by_test_id("stDataFrame").filter(has_text="Training prompts")
    assert hidden_width(router) <= 1, "the router's table is wider than its card: a column is cut off"

    page.get_by_role("button", name="Planning", exact=True).click()
    prompt = page.get_by_role("textbox", name="Prompt", exact=True)
    expect(prompt).to_have_value(re.compile("^Plan a \\$50,000 campaign"), timeout=STEP_MS)
    wait(page)
    page.get_by_role("button", name=re.compile(r"Run Inference$")).click()
    expect(metric(page, "Tokens")).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=RUN_TIMEOUT_MS)
    wait(page)
    assert_no_exception(page)
    assert answer_text(page.locator(".st-key-fed_response")), "the response box is empty"
    expect(metric(page, "Latency (ms)")).to_have_text(re.compile(r"^[\d,]+$"))
    expect(metric(page, "First load (ms)")).to_have_text(re.compile(r"^[\d,]+$"))
    expect(metric(page, "Adapters used")).to_have_text("1")
    chart = page.get_by_test_id("stPlotlyChart")
    expect(chart).to_contain_text("Gate weights")
    expect(chart).to_contain_text("planner v1")

    page.get_by_role("button", name=re.compile(r"Save$")).click()
    expect(page.get_by_test_id("stToast").filter(has_text="Saved browser gated as fed_")).to_be_visible(timeout=STEP_MS)
    wait(page)
    expect(page.get_by_text("SAVED", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"Save$"))).to_be_disabled()
    expect(page.get_by_role("combobox", name="Saved federation")).to_have_value(re.compile("^browser gated · "))
    saved = page.get_by_test_id("stDataFrame").filter(has_text="browser gated")
    assert hidden_width(saved) <= 1, "the saved federations table is wider than its half of the page"
    screenshot(page, wait, tmp_path / "federation.png")

    open_page(page, wait, "Adapters")
    adapters = page.get_by_test_id("stDataFrame").filter(has_text="Held-out accuracy").first
    expect(adapters).to_contain_text("mapper v1")
    assert hidden_width(adapters) <= 1, "the adapters table is wider than the page: its last columns are cut off"
    screenshot(page, wait, tmp_path / "adapters.png")

    open_page(page, wait, "Playground")
    pick_radio(page, wait, "Run on", "Adapter")
    choose(page, wait, "Adapter", "mapper")
    expect(page.get_by_role("textbox", name="Prompt", exact=True)).to_have_value(re.compile("^Map field"))
    page.get_by_role("button", name=re.compile(r"^\S* ?Run$")).click()
    expect(metric(page, "Tokens")).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=RUN_TIMEOUT_MS)
    wait(page)
    assert_no_exception(page)
    output = page.locator(".st-key-pg_output").inner_text().strip()
    assert output and "Run a prompt to see" not in output
    expect(page.get_by_role("combobox", name="History entry")).to_have_value(re.compile(r"mapper v1 \(adapter\)"))
    cells = page.get_by_test_id("stDataFrame").locator('td[role="gridcell"]', has_text="mapper v1 (adapter)")
    expect(cells).to_have_count(1)
    page.get_by_test_id("stExpander").filter(has_text="Generation settings").get_by_text("Generation settings").click()
    wait(page)
    screenshot(page, wait, tmp_path / "playground.png")

    page.get_by_role("button", name=re.compile(r"Clear history$")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("This deletes every saved run")
    dialog.get_by_role("button", name="Clear history").click()
    expect(page.get_by_test_id("stToast").filter(has_text="Cleared the history (1 run)")).to_be_visible(timeout=STEP_MS)
    wait(page)
    expect(page.get_by_text("No runs yet")).to_be_visible()

    open_page(page, wait, "Federation")
    page.get_by_role("button", name=re.compile(r"Delete$")).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("browser gated")
    dialog.get_by_role("button", name="Delete permanently").click()
    expect(page.get_by_test_id("stToast").filter(has_text="Deleted browser gated")).to_be_visible(timeout=STEP_MS)
    wait(page)
    # the saved list says so (each A/B side, in its hidden tab, says "No saved federations yet: create one")
    expect(page.get_by_text("No saved federations yet.")).to_be_visible()
    assert_no_exception(page)


@pytest.mark.timeout(600)  # two one-step trainings and a server of its own on a busy machine
def test_walk_the_saved_federations_page_box_shows_its_minus_and_plus(
    console_server, console_models, browser_page, wait_for_streamlit, tmp_path, monkeypatch
):
    """On the closing walk Saved federations (half of the Federation page) gave its page box a fifth of its width,
    about 80 px, where Streamlit draws the number without its - and +. Both are drawn now, side by side within the
    panel, with room for the number and the whole label. (A registry of its own: one-step adapters are enough to
    save a federation, and the shared console's 80-step ones take minutes to train.)"""
    home = tmp_path / "home"
    monkeypatch.setenv("RMN_LORA_HOME", str(home))
    monkeypatch.setenv("RMN_LORA_MODELS", str(console_models))
    from test_federation_pages import train_tiny_adapters

    from services.federation import compose_federation, save_federation

    train_tiny_adapters("tiny-llama", tmp_path / "jobs", steps=1)
    save_federation(compose_federation(retailer_adapter="mapper", task_adapter="planner", name="narrow pager"))
    page, wait = browser_page, wait_for_streamlit
    page.set_viewport_size({"width": 1400, "height": 1000})  # the walk's window
    page.goto(console_server(home).url)
    wait(page, FIRST_VISIT_MS)
    open_page(page, wait, "Federation")
    table = page.get_by_test_id("stDataFrame").filter(has_text="narrow pager")
    expect(table).to_be_visible()
    pager = page.get_by_test_id("stNumberInput").filter(
        has=page.get_by_role("spinbutton", name=re.compile("^Page")), visible=True
    )
    field = pager.get_by_role("spinbutton").bounding_box()
    down, up = (pager.get_by_test_id(step) for step in ("stNumberInputStepDown", "stNumberInputStepUp"))
    expect(down).to_be_visible()
    expect(up).to_be_visible()
    left, right, panel = down.bounding_box(), up.bounding_box(), table.bounding_box()
    assert field["x"] + field["width"] <= left["x"] < left["x"] + left["width"] <= right["x"], "- and + overlap"
    assert panel["x"] <= field["x"] and right["x"] + right["width"] <= panel["x"] + panel["width"], "out of the panel"
    assert field["width"] >= 48, f"the number has {field['width']:.0f} px"
    label = pager.get_by_test_id("stWidgetLabel")
    assert label.evaluate("e => [e, ...e.querySelectorAll('*')].every(x => x.scrollWidth <= x.clientWidth)"), (
        "label cut"
    )
