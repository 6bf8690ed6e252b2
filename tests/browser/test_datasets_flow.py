"""End to end, as a new user would click it: upload a dataset, validate it, export it; edit, save and test a mapping.

Runs against the session's real `streamlit run app.py` (fixture `console_url`) on the seeded temp registry
(fixture `console_home`). Expected numbers are computed in this process with `services`, pointed at that registry.
Every step waits for Streamlit's script run to finish (`wait_for_streamlit`) and checks that no `stException`
(a traceback) is on the page.

These tests add datasets to the shared session registry and bump the Amazon mapping's version; their assertions
are relative to what is on disk when they start, so they do not depend on running in a given order.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

from tests.browser.widgets import choose

PEER_DATA = Path("/work/shared/peer-data")
PEER_ALPACA = PEER_DATA / "alpaca_en_demo.json"
BANDS = ("Excellent", "Good", "Fair", "Poor")
GRID_ROW_PX = 35  # glide-data-grid's row (and header) height in Streamlit 1.67
DATA_EDITOR_COLUMNS = [
    "Source field",
    "Target (RMIS)",
    "Transform",
    re.compile(r"Status of saved v[\d.]+"),
    "Params (JSON)",
    "Notes",
]


@pytest.fixture
def registry_env(console_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point `services` in this process at the server's registry, to compute what the page should show."""
    monkeypatch.setenv("RMN_LORA_HOME", str(console_home))
    return console_home


# ---------------------------------------------------------------------------------------------- helpers


def assert_no_exception(page: Page) -> None:
    assert page.get_by_test_id("stException").count() == 0, "the page shows a Streamlit exception (traceback)"


def open_from_sidebar(page: Page, console_url: str, wait: Callable[[Page], None], title: str) -> None:
    """Open the console on its home page, then click the sidebar link, as a user would."""
    page.goto(console_url)
    wait(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    wait(page)
    expect(page.get_by_role("heading", level=1)).to_contain_text(title)
    assert_no_exception(page)


def rerun_after(page: Page, wait: Callable[[Page], None], action: Callable[[], None]) -> None:
    """Do `action`, wait until it has started a script run, then until that run (and any follow-up) is done.

    `wait_for_streamlit` alone can return before a rerun that the frontend sends a moment later (a data_editor
    edit reaches the server ~150 ms after the cell is committed), so watch the app's script-state attribute.
    """
    page.evaluate(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            if (window.__rerunWatch) window.__rerunWatch.disconnect();
            window.__reruns = 0;
            window.__rerunWatch = new MutationObserver(() => { window.__reruns += 1; });
            window.__rerunWatch.observe(app, {attributes: true, attributeFilter: ["data-test-script-state"]});
        }"""
    )
    action()
    page.wait_for_function("() => window.__reruns > 0")
    wait(page)


def alert(page: Page, text: str | re.Pattern[str]) -> Locator:
    """The alert holding `text`. Its text content starts with its icon's ligature name glued to the message
    ("errorLine 2: ..."), so a pattern must not anchor the message with ^ or \\b."""
    return page.get_by_test_id("stAlert").filter(has_text=text)


def metric(page: Page, label: str) -> Locator:
    """The value of the metric labelled `label`, for `expect(...)` (which waits for the rerun to show it)."""
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return card.get_by_test_id("stMetricValue")


def open_upload_panel(page: Page, wait: Callable[[Page], None]) -> None:
    expander = page.get_by_test_id("stExpander").filter(has_text="Upload dataset")
    if expander.locator("details[open]").count() == 0:
        expander.get_by_text("Upload dataset").click()
        wait(page)
    expect(expander.locator("details[open]")).to_have_count(1)


def upload(page: Page, wait: Callable[[Page], None], path: Path) -> None:
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    wait(page)
    expect(page.get_by_test_id("stFileChip").filter(has_text=path.name)).to_be_visible()


def open_cell_editor(grid: Locator, cell_editor: Locator, x: int, y: int) -> None:
    """Double-click a data_editor cell until its text editor opens.

    When focus is elsewhere on the page (a text area, a tab), glide-data-grid spends the first double-click on
    taking focus, so one more is sometimes needed; each try waits longer (a loaded machine draws the editor late).
    """
    for timeout in (1500, 5000, 20_000):
        grid.dblclick(position={"x": x, "y": y})
        try:
            cell_editor.wait_for(timeout=timeout)
            return
        except PlaywrightError:
            continue
    pytest.fail(f"double-clicking the grid at ({x}, {y}) did not open a cell editor")


def grid_texts_scrolled(page: Page, grid: Locator, until: str) -> set[str]:
    """Cell texts of a glide-data-grid, scrolling it right until a cell reading `until` is drawn.

    The grid is a canvas; its cells exist in the DOM only as an accessibility table of the columns in view, which
    follows the scroll position a frame or two later, hence a short wait for the wanted cell after each wheel step.
    """
    seen: set[str] = set()
    target = grid.locator('td[role="gridcell"]', has_text=re.compile(rf"^{re.escape(until)}$"))
    grid.hover()
    for _ in range(20):
        try:
            target.first.wait_for(state="attached", timeout=750)
        except PlaywrightError:
            seen.update(grid.locator('td[role="gridcell"]').all_text_contents())
            page.mouse.wheel(250, 0)
            continue
        seen.update(grid.locator('td[role="gridcell"]').all_text_contents())
        return seen
    pytest.fail(f"no cell reading {until!r} while scrolling the grid right; cells seen: {sorted(seen)[:40]}")


# ------------------------------------------------------------------------------------------------ tests


def alpaca_jsonl(tmp_path: Path) -> Path:
    """A small alpaca JSONL with a duplicate and an empty answer, so the quality score is not a perfect 100."""
    rows = [
        {
            "instruction": f"Write a headline for sponsored product number {i}.",
            "input": "",
            "output": f"Headline {i}: fresh and fast.",
        }
        for i in range(30)
    ]
    rows.append(dict(rows[3]))
    rows.append({"instruction": "Summarise last week's campaign.", "input": "", "output": ""})
    path = tmp_path / "tour_alpaca.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("source", ["peer_alpaca_json", "tmp_alpaca_jsonl"])
def test_upload_validate_and_export_dataset(
    source: str, console_url: str, registry_env: Path, browser_page: Page, wait_for_streamlit, tmp_path: Path
):
    from registry import datasets as library
    from services import validate_dataset

    page, wait = browser_page, wait_for_streamlit
    if source == "peer_alpaca_json":
        if not PEER_ALPACA.is_file():
            pytest.skip(f"{PEER_ALPACA} is absent: the peer data set (LLaMA-Factory demo files) is not on this machine")
        path, name, suggested = PEER_ALPACA, "peer_alpaca", "alpaca_en_demo"
    else:
        path, name, suggested = alpaca_jsonl(tmp_path), "tour_alpaca", "tour_alpaca"
    assert name not in {r.name for r in library.list_datasets()}

    # 1. Dataset Library, from the sidebar.
    open_from_sidebar(page, console_url, wait, "Dataset Library")

    # 2. Upload: the detected shape, then import under a chosen name, with the quality score in the message.
    open_upload_panel(page, wait)
    upload(page, wait, path)
    expect(alert(page, "Detected")).to_contain_text("SFT, alpaca: instruction, input, output")
    expect(alert(page, "Detected")).to_contain_text(re.compile(r"\d+ of \d+ sampled records match"))
    name_box = page.get_by_label("Dataset name")
    expect(name_box).to_have_value(suggested)
    name_box.fill(name)
    rerun_after(page, wait, page.get_by_role("button", name="Import dataset").click)
    assert_no_exception(page)
    record = library.get_dataset(name)
    imported = alert(page, f"Imported {name}")
    expect(imported).to_contain_text(
        f"Imported {name} v1: {record.rows:,} SFT examples, quality {record.quality_score}."
    )
    # The new dataset is listed and shown in the details straight away, not only after the next click.
    expect(page.get_by_role("combobox", name="Dataset", exact=True)).to_have_value(name)

    # 3. Pick it in the "Dataset" selectbox (after another one), then validate it in the "Quality report" tab.
    choose(page, wait, "Dataset", "retailer_amazon_sft")
    expect(metric(page, "Examples")).to_have_text(f"{library.get_dataset('retailer_amazon_sft').rows:,}")
    choose(page, wait, "Dataset", name)
    expect(metric(page, "Examples")).to_have_text(f"{record.rows:,}")
    page.get_by_role("tab", name="Quality report").click()
    wait(page)
    rerun_after(page, wait, page.get_by_role("button", name=re.compile(r"Validate$")).click)
    assert_no_exception(page)
    expected = validate_dataset(name)  # the same service the button calls, in this process
    expect(metric(page, "Quality score")).to_have_text(re.compile(r"^\d{1,3}/100$"))
    expect(metric(page, "Quality score")).to_have_text(f"{expected.quality_score}/100")
    assert expected.band in BANDS
    panel = page.locator('[data-testid="stTabPanel"]:not([inert])')
    expect(panel.get_by_text(expected.band, exact=True)).to_be_visible()
    expect(metric(page, "Rows")).to_have_text(f"{expected.rows:,}")
    expect(metric(page, "Issues")).to_have_text(f"{expected.issue_count:,}")
    assert expected.rows == record.rows

    # 4. Export: JSONL, one JSON object a line, as many as the dataset has rows; CSV, a header plus those rows.
    with page.expect_download() as jsonl_download:
        page.get_by_role("button", name=re.compile(r"Export JSONL$")).click()
    download = jsonl_download.value
    assert download.suggested_filename == f"{name}.jsonl"
    lines = Path(download.path()).read_bytes().splitlines()
    assert len(lines) == record.rows
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(row, dict) and {"instruction", "output"} <= row.keys() for row in parsed)

    with page.expect_download() as csv_download:
        page.get_by_role("button", name=re.compile(r"Export CSV$")).click()
    download = csv_download.value
    assert download.suggested_filename == f"{name}.csv"
    table = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert len(table) == record.rows
    assert [row["instruction"] for row in table] == [row["instruction"] for row in parsed]
    assert_no_exception(page)

    # 5. Selecting a row of the library table shows that dataset, and the "Dataset" selectbox still works after.
    names = [r.name for r in library.list_datasets()]  # the table's order, all on its first page
    other = next(n for n in names if n != name)
    library_grid = page.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="Examples"))
    row_y = GRID_ROW_PX * (names.index(other) + 1) + GRID_ROW_PX // 2
    rerun_after(page, wait, lambda: library_grid.click(position={"x": 16, "y": row_y}))  # the row's checkbox
    expect(page.get_by_role("combobox", name="Dataset", exact=True)).to_have_value(other)
    choose(page, wait, "Dataset", name)
    expect(metric(page, "Examples")).to_have_text(f"{record.rows:,}")
    assert_no_exception(page)


def test_malformed_jsonl_upload_shows_line_error(
    console_url: str, registry_env: Path, browser_page: Page, wait_for_streamlit, tmp_path: Path
):
    from registry import datasets as library

    page, wait = browser_page, wait_for_streamlit
    bad = tmp_path / "broken_lines.jsonl"
    bad.write_text(
        '{"instruction": "Name a retail media KPI.", "input": "", "output": "ROAS"}\n'
        '{"instruction": "This line is cut off", "output": \n'
        '{"instruction": "Name another one.", "input": "", "output": "CTR"}\n',
        encoding="utf-8",
    )
    before = sorted(r.name for r in library.list_datasets())

    open_from_sidebar(page, console_url, wait, "Dataset Library")
    open_upload_panel(page, wait)
    upload(page, wait, bad)

    error = alert(page, "Line 2: invalid JSON")
    expect(error).to_be_visible(timeout=30_000)  # the file is read whole before the report
    assert "Traceback" not in error.inner_text()
    assert_no_exception(page)
    expect(page.get_by_role("button", name="Import dataset")).to_have_count(0)
    assert sorted(r.name for r in library.list_datasets()) == before
    expect(page.get_by_text(re.compile(rf"^Showing \S+ of {len(before):,}$"))).to_be_visible()


def test_edit_save_and_test_amazon_mapping(
    console_url: str, registry_env: Path, browser_page: Page, wait_for_streamlit
):
    from registry import mappings

    page, wait = browser_page, wait_for_streamlit
    start = mappings.get_mapping("Amazon")
    major, minor, patch = map(int, start.version.split("."))
    after_yaml, after_grid = f"{major}.{minor}.{patch + 1}", f"{major}.{minor}.{patch + 2}"

    # 5a. Schema Mappings -> Amazon -> YAML: change the description and save; the version is bumped.
    open_from_sidebar(page, console_url, wait, "Schema Mappings")
    choose(page, wait, "Retailer", "Amazon")
    expect(metric(page, "Version")).to_have_text(f"v{start.version}")
    page.get_by_role("tab", name="YAML").click()
    wait(page)
    yaml_box = page.get_by_label("Mapping YAML")
    text = yaml_box.input_value()
    assert re.search(rf"^version: {re.escape(start.version)}$", text, re.MULTILINE)
    description = f"Amazon Ads hourly events (edited in the browser test, from v{start.version})."
    edited, count = re.subn(r"^description: .*$", f"description: {description}", text, count=1, flags=re.MULTILINE)
    assert count == 1
    yaml_box.fill(edited)
    rerun_after(page, wait, page.get_by_role("button", name="Save YAML (bumps version)").click)
    assert_no_exception(page)
    expect(alert(page, "Saved Amazon mapping")).to_contain_text(f"Saved Amazon mapping as v{after_yaml}.")
    expect(metric(page, "Version")).to_have_text(f"v{after_yaml}")
    expect(page.get_by_text(description, exact=True)).to_be_visible()
    saved = mappings.get_mapping("Amazon")
    assert (saved.version, saved.description) == (after_yaml, description)
    assert start.version in mappings.mapping_history("Amazon")

    # 5b. Field mapping grid (st.data_editor): double-click a cell, move to "Notes", edit it, save again.
    page.get_by_role("tab", name="Field mapping").click()
    wait(page)
    grid = page.locator('[data-testid="stTabPanel"]:not([inert])').get_by_test_id("stDataFrame")
    expect(grid.locator("th")).to_have_text(DATA_EDITOR_COLUMNS)
    row = next(i for i, field in enumerate(saved.fields) if field.source == "keywordText")
    note = saved.fields[row].notes or ""
    cell_editor = page.locator("textarea.gdg-input")
    open_cell_editor(grid, cell_editor, x=100, y=GRID_ROW_PX * (row + 1) + GRID_ROW_PX // 2)
    expect(cell_editor).to_have_value("keywordText")  # the "Source field" cell of the keyword row
    page.keyboard.press("Escape")
    expect(cell_editor).to_have_count(0)
    for _ in range(DATA_EDITOR_COLUMNS.index("Notes")):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    expect(cell_editor).to_have_value(note)
    page.keyboard.press("End")
    page.keyboard.type(" Checked in the browser.")
    expect(cell_editor).to_have_value(f"{note} Checked in the browser.")
    # glide-data-grid commits the value its overlay editor saw on its last render: typing faster than a person
    # can leave that a keystroke behind, so let two frames render before Enter commits the edit.
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    page.keyboard.press("Enter")
    expect(cell_editor).to_have_count(0)
    # The committed edit reruns the page, which then says it holds an unsaved change.
    expect(page.get_by_text(f"Unsaved changes to v{after_yaml}: 1 edited row.")).to_be_visible()
    wait(page)
    rerun_after(page, wait, page.get_by_role("button", name="Save mapping (bumps version)").click)
    assert_no_exception(page)
    expect(alert(page, "Saved Amazon mapping")).to_contain_text(f"Saved Amazon mapping as v{after_grid}.")
    saved = mappings.get_mapping("Amazon")
    assert saved.version == after_grid
    assert saved.fields[row].notes == f"{note} Checked in the browser."
    assert saved.description == description

    # 6. Test mapping: every field succeeds; raw and harmonized rows side by side, enum_map applied, no failing cell.
    page.get_by_role("tab", name="Field mapping").click()
    wait(page)
    rerun_after(page, wait, page.get_by_role("button", name="Test mapping").click)
    assert_no_exception(page)
    expect(alert(page, "fields of the edited mapping succeed")).to_contain_text(
        re.compile(rf"All {len(saved.fields)} fields of the edited mapping succeed on the \d+ sample rows\.")
    )
    expect(page.get_by_test_id("stAlert").filter(has_text="fail on the")).to_have_count(0)
    raw = page.get_by_test_id("stColumn").filter(has=page.get_by_text("Raw rows", exact=True))
    harmonized = page.get_by_test_id("stColumn").filter(has=page.get_by_text("Harmonized rows", exact=True))
    expect(raw.get_by_text(saved.source_id, exact=True)).to_be_visible()
    cells = grid_texts_scrolled(page, harmonized.get_by_test_id("stDataFrame"), until="sponsored_product")
    assert "Amazon" in cells  # the constant "retailer" column
    assert not [cell for cell in cells if cell.startswith("✗")], "a harmonized cell failed"
    assert_no_exception(page)


def test_a_windows_1252_csv_is_named_then_imported_with_its_encoding(
    console_url: str, registry_env: Path, browser_page: Page, wait_for_streamlit, tmp_path: Path
):
    """The preview names the line of the first bad byte and the encoding; choosing it imports every row."""
    from registry import datasets as library

    page, wait = browser_page, wait_for_streamlit
    rows = ["instruction,input,output", *(f"Did campaign {i} run?,,Ran {i}." for i in range(40))]
    rows[12] = "Did campaign 11 run?,,\u201cYes\u201d it ran."
    path = tmp_path / "excel_export.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))

    open_from_sidebar(page, console_url, wait, "Dataset Library")
    open_upload_panel(page, wait)
    upload(page, wait, path)
    error = page.get_by_test_id("stAlert").filter(has_text="Line 13: not valid UTF-8")
    expect(error).to_contain_text("it looks like Windows-1252")
    expect(error).to_contain_text("encoding=cp1252")
    expect(page.get_by_role("button", name="Import dataset")).to_have_count(0)

    choose(page, wait, "Text encoding", "Windows-1252 (Excel on Western Windows)")
    expect(alert(page, "Detected")).to_contain_text("SFT, alpaca")
    page.get_by_label("Dataset name").fill("excel_cp1252")
    rerun_after(page, wait, page.get_by_role("button", name="Import dataset").click)
    assert_no_exception(page)
    expect(alert(page, "Imported excel_cp1252")).to_contain_text("40 SFT examples")
    assert library.get_dataset("excel_cp1252").rows == 40
    assert library.read_rows("excel_cp1252", offset=11, limit=1)[0]["output"] == "\u201cYes\u201d it ran."


def test_item_8_test_mapping_names_the_failing_field_first(
    console_url: str, registry_env: Path, browser_page: Page, wait_for_streamlit
):
    """Issue 11 item 8: with an edited, unsaved broken source column, Test mapping said "1 of 15 fields fail: cost"
    while the grid's status column said "ok" and the failing row was below the visible rows of the status table.
    Now the test's own status table lists the failing field first and the grid's column says it is the saved one."""
    from registry import mappings

    page, wait = browser_page, wait_for_streamlit
    saved = mappings.get_mapping("Amazon")
    row = next(i for i, field in enumerate(saved.fields) if field.target == "cost")
    open_from_sidebar(page, console_url, wait, "Schema Mappings")
    choose(page, wait, "Retailer", "Amazon")
    grid = page.locator('[data-testid="stTabPanel"]:not([inert])').get_by_test_id("stDataFrame").first
    expect(grid.locator("th").nth(3)).to_have_text(f"Status of saved v{saved.version}")
    cell_editor = page.locator("textarea.gdg-input")
    open_cell_editor(grid, cell_editor, x=100, y=GRID_ROW_PX * (row + 1) + GRID_ROW_PX // 2)
    expect(cell_editor).to_have_value(saved.fields[row].source)
    page.keyboard.press("Control+A")
    page.keyboard.type("no_such_column")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    page.keyboard.press("Enter")
    expect(page.get_by_text(f"Unsaved changes to v{saved.version}: 1 edited row.")).to_be_visible()
    wait(page)
    rerun_after(page, wait, page.get_by_role("button", name="Test mapping").click)
    assert_no_exception(page)
    expect(alert(page, "fail on the")).to_contain_text(f"1 of {len(saved.fields)} fields of the edited mapping fail")
    expect(alert(page, "fail on the")).to_contain_text("cost")
    status_table = page.locator('[data-testid="stTabPanel"]:not([inert])').get_by_test_id("stDataFrame").nth(1)
    first_row = status_table.locator('td[role="gridcell"]').first
    expect(first_row).to_have_text("cost")
    assert mappings.get_mapping("Amazon").version == saved.version, "testing saved nothing"


def test_walk_the_detected_message_of_a_chat_file_has_no_brackets_in_brackets(
    console_url: str, browser_page: Page, wait_for_streamlit, tmp_path: Path
):
    """An OpenAI chat export with tool calls read "Detected SFT, chat: … (ShareGPT conversations accepted)
    (messages (role / content) with tool calls; 30 of 30 …)" (issue 11 closing walk): one sentence, no pair of
    brackets inside another."""
    page, wait = browser_page, wait_for_streamlit
    call = {"id": "call_1", "type": "function", "function": {"name": "get_spend", "arguments": '{"sku": "A1"}'}}
    record = {
        "messages": [
            {"role": "user", "content": "What did SKU A1 spend yesterday?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"spend": 12.5}'},
            {"role": "assistant", "content": "SKU A1 spent $12.50 yesterday."},
        ]
    }
    path = tmp_path / "chat_tools.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for _ in range(5)))

    open_from_sidebar(page, console_url, wait, "Dataset Library")
    open_upload_panel(page, wait)
    upload(page, wait, path)
    message = alert(page, "Detected")
    expect(message).to_contain_text("with tool calls")
    expect(message).to_contain_text("5 of 5 sampled records match")
    depth, deepest = 0, 0
    for character in message.inner_text():
        depth += {"(": 1, ")": -1}.get(character, 0)
        deepest = max(deepest, depth)
    assert deepest == 1 and depth == 0, message.inner_text()
