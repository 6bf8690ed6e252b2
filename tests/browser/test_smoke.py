"""Smoke: the console starts on a seeded registry, renders its home page in chromium, and shows no exception."""

import csv
import io
import re
import warnings
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError


def test_console_home_page_renders(console_url: str, browser_page, wait_for_streamlit, tmp_path: Path):
    browser_page.goto(console_url)
    wait_for_streamlit(browser_page)

    assert "RMN LoRA Console" in browser_page.title()
    heading = browser_page.locator("h1").first
    heading.wait_for()
    assert "RMN LoRA Console" in heading.inner_text()
    assert browser_page.locator('[data-testid="stException"]').count() == 0
    # The five KPI cards are one row of equal cards, however their captions wrap ("queued, running and finished"
    # took a line more than "2,561 examples", and its card stood taller).
    browser_page.get_by_test_id("stMetric").nth(4).wait_for()
    heights = browser_page.get_by_test_id("stMetric").evaluate_all(
        "metrics => metrics.slice(0, 5).map(m => m.closest('[data-testid=\"stVerticalBlock\"]')"
        ".getBoundingClientRect().height)"
    )
    assert len(heights) == 5 and max(heights) - min(heights) < 1, heights

    shot = tmp_path / "home.png"
    browser_page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    print(f"home page screenshot: {shot}")


CUT_LABELS = """() => [...document.querySelectorAll('[data-testid="stMetricLabel"], [data-testid="stPageLink"]')]
    .filter(box => [box, ...box.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
    .map(box => box.innerText)"""


def test_home_card_labels_and_quick_actions_are_whole_at_1100_px_and_wider(
    console_url, browser_page, wait_for_streamlit
):
    """At 1100 px five card columns cut "Schema mappings" to "Schema ma…" and three link columns cut "Compose and
    test a federation" and "Try a prompt in the Playground"; the cards and links now wrap onto another line. A
    wrapped card keeps the others' width (stretching cards left the fifth alone across the whole row at 1100 px),
    and the cards fill their row (cards of a fixed width left a third of it empty at 1920 px)."""
    page = browser_page
    page.goto(console_url)
    wait_for_streamlit(page)
    page.get_by_test_id("stPageLink").filter(has_text="System Health").wait_for()
    cards = page.locator(".st-key-home_cards [data-testid='stMetric']")
    for width in (1100, 1280, 1440, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(500)  # the layout follows the window
        labels = page.get_by_test_id("stMetricLabel").all_inner_texts()
        assert {"Schema mappings", "Training jobs", "Federations"} <= set(labels), labels
        assert page.evaluate(CUT_LABELS) == [], width
        widths = cards.evaluate_all(CARD_WIDTHS)
        assert len(widths) == 5 and max(widths) - min(widths) < 1, (width, widths)
        row_right = page.locator(".st-key-home_cards").evaluate("row => row.getBoundingClientRect().right")
        cards_right = max(cards.evaluate_all(CARD_RIGHTS))
        assert abs(row_right - cards_right) < 2, f"at {width} px the cards stop {row_right - cards_right:.0f} px short"


CARD_WIDTHS = (
    """metrics => metrics.map(m => m.closest('[data-testid="stVerticalBlock"]').getBoundingClientRect().width)"""
)
CARD_RIGHTS = (
    """metrics => metrics.map(m => m.closest('[data-testid="stVerticalBlock"]').getBoundingClientRect().right)"""
)


def test_system_health_card_labels_and_values_are_whole_at_1100_px_and_wider(
    console_url, browser_page, wait_for_streamlit
):
    """In four columns (148 px each at 1100 px) "This server (RSS)" and its value "307.2 MB" were cut; the cards
    are two a row."""
    page = browser_page
    page.goto(f"{console_url}/system_health")
    wait_for_streamlit(page)
    page.get_by_test_id("stMetricLabel").filter(has_text="This server (RSS)").wait_for()
    for width in (1100, 1280, 1440, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(500)  # the layout follows the window
        cut = page.get_by_test_id("stMetric").evaluate_all(
            "metrics => metrics.flatMap(m => [...m.querySelectorAll('*')])"
            ".filter(e => (e.innerText || '').trim() && e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)"
        )
        assert cut == [], (width, cut)


CUT_TEXT = """root => [...root.querySelectorAll('*')]
    .filter(e => ['ellipsis', 'clip'].includes(getComputedStyle(e).textOverflow) || getComputedStyle(e).overflow === 'hidden')
    .filter(e => (e.innerText || '').trim() && e.scrollWidth > e.clientWidth + 1)
    .map(e => e.innerText.trim())"""


def test_the_training_form_labels_and_its_start_button_are_whole(console_url, browser_page, wait_for_streamlit):
    """At 1440 px "Batch examples of similar length" was cut in its third of Advanced settings (at 1280 px also
    "Gradient checkpointing" and the compile switch: a third of the form is 180 px there), and at 1100 px the Start
    Training button was cut in its quarter of the row and "Evaluate the base model first" in its half."""
    from tests.browser.test_console_in_use import open_advanced, open_page

    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    open_advanced(page, wait_for_streamlit)
    page.get_by_role("spinbutton", name="Max steps", exact=True).wait_for()
    # The form's column only: below it, a job's log is a box that scrolls sideways on purpose.
    form = page.get_by_test_id("stColumn").filter(has=page.get_by_role("heading", name="Create training job")).first
    for width in (1440, 1280, 1100):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(500)  # the layout follows the window
        assert form.evaluate(CUT_TEXT) == [], width


def test_a_page_address_as_the_first_visit_runs_through_the_app(
    console_server, browser_page, wait_for_streamlit, tmp_path: Path
):
    """Streamlit runs a `views/` folder's file directly (its v1 multipage mode) on a fresh server's first request
    for that page's address: the sign-in gate and the navigation of app.py would be skipped, and the sidebar
    would list every module of the folder. The first visit of a fresh server here is a page's address."""
    home = tmp_path / "registry"
    home.mkdir()
    server = console_server(home)
    browser_page.goto(f"{server.url}/dataset_library")
    wait_for_streamlit(browser_page)
    browser_page.get_by_role("heading", name="Dataset Library").wait_for()
    sidebar = browser_page.get_by_test_id("stSidebarNav").inner_text()
    assert "Training Management" in sidebar, sidebar
    assert "session" not in sidebar.split() and "common" not in sidebar.split(), sidebar


def test_the_data_browser_export_is_built_on_click_with_every_filtered_row(
    console_url: str, browser_page, wait_for_streamlit
):
    """The export is no longer built on every run (it held every filtered row, 0.3 s a run): the click builds it,
    and it still holds every row that matches, not only the page shown."""
    browser_page.goto(f"{console_url}/data_browser")
    wait_for_streamlit(browser_page)
    matching = int(
        browser_page.get_by_text(re.compile(r"of [\d,]+ rows match")).inner_text().split()[0].replace(",", "")
    )
    assert matching > 50  # more than one page of the table
    download = export_once_more_if_lost(browser_page, "Export CSV")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert download.suggested_filename.endswith("_filtered.csv") and len(rows) == matching
    assert browser_page.locator('[data-testid="stException"]').count() == 0


def test_a_tables_toolbar_leaves_its_page_control_clickable(console_url, browser_page, wait_for_streamlit):
    """Every paginated table had its page number box at the right edge just above it, where the table's hover
    toolbar (show / hide columns, download, search, full screen) is drawn: moving the pointer up from the table to
    the page's + put it on the toolbar instead (seen on the issue 11 closing walk). With the table hovered, the page
    box's - and + are still what the pointer finds."""
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(console_url)
    wait_for_streamlit(page)
    for title in ("Dataset Library", "Data Browser"):
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
        wait_for_streamlit(page)
        page.get_by_test_id("stDataFrame").first.hover()
        page.get_by_test_id("stElementToolbar").first.wait_for()
        page.wait_for_timeout(1000)  # the toolbar slides into place
        pager = page.get_by_test_id("stNumberInput").filter(
            has=page.get_by_role("spinbutton", name=re.compile("^Page"))
        )
        for step in ("stNumberInputStepDown", "stNumberInputStepUp"):
            button = pager.get_by_test_id(step)
            box = button.bounding_box()
            found = page.evaluate(
                "([x, y]) => document.elementFromPoint(x, y).closest('[data-testid]').dataset.testid",
                [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
            )
            assert found == step, f"{title}: the pointer over the page box's {step} finds {found}"


# Each select box of a root: its label, the value its combobox input shows, and whether the input cuts that value.
SELECT_VALUES = """root => [...root.querySelectorAll('[data-testid="stSelectbox"]')].map(box => {
    const input = box.querySelector('input[role="combobox"]');
    return {
        label: box.querySelector('[data-testid="stWidgetLabel"]').innerText.trim(),
        value: input.value,
        cut: input.scrollWidth > input.clientWidth + 1,
    };
})"""


def test_walk_the_processes_choice_of_the_training_form_is_whole_at_1400_px(
    console_url, browser_page, wait_for_streamlit, tmp_path: Path
):
    """In a third of Advanced settings "Processes (data parallel)" showed "auto (long fp32 CPU jobs, 1(" (the closing
    walk of issue 11): every select box of the form shows its whole value at 1400 px and wider."""
    from tests.browser.test_console_in_use import open_advanced, open_page

    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 900})
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    open_advanced(page, wait_for_streamlit)
    page.get_by_role("spinbutton", name="Max steps", exact=True).wait_for()
    form = page.get_by_test_id("stColumn").filter(has=page.get_by_role("heading", name="Create training job")).first
    for width in (1400, 1920):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(500)  # the layout follows the window
        boxes = form.evaluate(SELECT_VALUES)
        assert "Processes (data parallel)" in [b["label"] for b in boxes], boxes
        assert [b for b in boxes if b["cut"] or not b["value"]] == [], (width, boxes)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.get_by_test_id("stSelectbox").filter(has_text="Processes (data parallel)").scroll_into_view_if_needed()
    shot = tmp_path / "training-form-advanced-1400.png"
    page.screenshot(path=str(shot))
    print(f"training form screenshot: {shot}")


def test_walk_the_base_model_choice_of_the_training_form_is_whole_at_1400_px(
    console_models, browser_page, wait_for_streamlit, tmp_path: Path, monkeypatch
):
    """At 1400 px the training form's Base model read "SmolLM2-135M-Instruct (embedded, 135M params" (issue 11
    closing walk, twice): a model id of a Hub-like length with its size shows whole in its half of the form."""
    from console_server import ConsoleServer

    from tests.browser.test_console_in_use import open_page
    from tests.browser.widgets import choose

    monkeypatch.setenv("RMN_LORA_HOME", str(tmp_path / "home"))
    from services import upload_dataset

    (tmp_path / "short.jsonl").write_text('{"instruction": "Map adType sp", "output": "placement_type: sp"}\n')
    upload_dataset("short_sft", tmp_path / "short.jsonl")
    models = tmp_path / "models"
    models.mkdir()
    (models / "SmolLM2-135M-Instruct-RMN-v2").symlink_to(console_models / "tiny-llama", target_is_directory=True)
    server = ConsoleServer(tmp_path / "home", models, tmp_path / "server.log")
    try:
        page = browser_page
        page.set_viewport_size({"width": 1400, "height": 900})
        open_page(page, server.url, wait_for_streamlit, "Training Jobs")
        choose(page, wait_for_streamlit, "Base model", "SmolLM2-135M-Instruct-RMN-v2")
        form = page.get_by_test_id("stColumn").filter(has=page.get_by_role("heading", name="Create training job"))
        box = next(b for b in form.first.evaluate(SELECT_VALUES) if b["label"] == "Base model")
        assert box["value"].startswith("SmolLM2-135M-Instruct-RMN-v2") and not box["cut"], box
    finally:
        server.stop()


def export_once_more_if_lost(page, label: str):
    """Click an on-click (deferred) export and return its download. Once in CI (stop 27) the download never came, on a
    loaded 2-core machine, and the report held no page text or server log to say why: a lost first download is
    clicked again, as a user would, with what the page showed kept as a warning so the cause can be found."""
    try:
        with page.expect_download() as download:
            page.get_by_role("button", name=label).click()
        return download.value
    except PlaywrightTimeoutError:
        shown = page.locator("body").inner_text()
        warnings.warn(f"{label}: no download within 30 s; the page said: {shown}", stacklevel=2)
    with page.expect_download() as download:
        page.get_by_role("button", name=label).click()
    return download.value
