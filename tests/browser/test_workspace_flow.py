"""From an idea to a shipped model in the browser: the Train Model wizard (Back, an inline error, Launch), the job
running on the tiny model, Publish with the archive downloaded, the package on Models, the events on Activity."""

import csv
import io
import json
import re
import time
import zipfile

import pytest

from tests.browser.widgets import choose
from views.theme import PALETTES

ADAPTER = "wizard_tiny"


def step_title(page) -> str:
    return page.locator('[data-testid="stProgress"]').first.inner_text()


def next_step(page, wait, expected: int) -> None:
    """Click Next and wait until the wizard shows step `expected`; the review step runs the submission checks, whose
    first call imports the trainer (slow on a busy machine)."""
    page.get_by_role("button", name="Next").click()
    wait(page, timeout_ms=240_000 if expected == 6 else 30_000)
    page.get_by_text(f"Step {expected} of 6").wait_for()


@pytest.mark.timeout(2400)
def test_wizard_trains_then_publish_download_models_and_activity(
    console_url, browser_page, wait_for_streamlit, tmp_path
):
    page, wait = browser_page, wait_for_streamlit
    page.goto(console_url)
    wait(page)
    page.goto(f"{console_url}/train_wizard")
    wait(page)

    # Step 1: the experiment; Next without an adapter name shows JobConfig's error under the field.
    page.get_by_role("textbox", name="Experiment name").fill("Planner on the tiny model")
    page.get_by_role("textbox", name="Description").fill("Does a 6-step run learn the plan format?")
    page.get_by_role("textbox", name="Goal").fill("Loss under the first step's")
    page.get_by_role("textbox", name="Goal").press("Tab")
    wait(page)
    page.get_by_role("button", name="Next").click()
    wait(page)
    page.get_by_text("The adapter name is empty").wait_for()
    assert "Step 1 of 6" in step_title(page)
    page.get_by_role("textbox", name="Adapter name").fill(ADAPTER)
    page.get_by_role("textbox", name="Adapter name").press("Tab")
    wait(page)
    next_step(page, wait, 2)

    # Step 2: the tiny local base model.
    choose(page, wait, "Base model", "tiny-llama")
    next_step(page, wait, 3)

    # Step 3: training data; then forward, Back, and forward again: the answer is still there.
    choose(page, wait, "Training dataset", "task_planning_sft")
    next_step(page, wait, 4)
    page.get_by_role("button", name="Back").click()
    wait(page)
    page.get_by_text("Step 3 of 6").wait_for()
    assert "task_planning_sft" in page.get_by_role("combobox", name="Training dataset").input_value()
    next_step(page, wait, 4)
    next_step(page, wait, 5)  # no evaluation dataset

    # Step 5: a short run.
    steps = page.get_by_role("spinbutton", name="Max steps")
    steps.fill("6")
    steps.press("Enter")
    wait(page)
    next_step(page, wait, 6)

    # Step 6: review; Launch is enabled because the submission checks pass.
    page.get_by_text("The configuration is valid").wait_for()
    launch = page.get_by_role("button", name="Launch")
    assert launch.is_enabled()
    launch.click()
    wait(page)
    page.get_by_role("button", name="Start over").wait_for(timeout=240_000)  # the review's checks run again first
    assert not page.get_by_role("button", name="Launch").is_enabled()  # launched once, not twice
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and not page.get_by_text(": completed").is_visible():
        assert not page.get_by_text(": failed").is_visible(), page.inner_text("body")
        page.wait_for_timeout(1000)
    assert page.get_by_text(": completed").is_visible(), "the wizard's job did not complete in time"

    # Publish the adapter (merged), then download the archive.
    page.get_by_role("link", name="Publish the adapter").click()
    wait(page)
    choose(page, wait, "Adapter", ADAPTER)
    page.get_by_test_id("stBaseButton-primaryFormSubmit").click()  # "Publish" also names the source picker's help
    wait(page)
    # A job of the job manager: its card follows the stages (the fresh-process check alone takes seconds).
    page.get_by_text(f"Publishing {ADAPTER}-v1-merged from {ADAPTER} v1").wait_for(timeout=120_000)
    page.get_by_test_id("stProgress").filter(has_text="of 5").first.wait_for(timeout=120_000)
    page.get_by_text(f"{ADAPTER}-v1-merged is ready").wait_for(timeout=600_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    with page.expect_download() as download:
        page.get_by_role("button", name="Download archive").click()
    archive = tmp_path / download.value.suggested_filename
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        manifest = json.loads(zipped.read(f"{ADAPTER}-v1-merged/manifest.json"))
    assert f"{ADAPTER}-v1-merged/model.safetensors" in names and manifest["verification"]["passed"]

    # The package on Models.
    page.get_by_role("link", name="See it on Models").click()
    wait(page)
    page.get_by_role("textbox", name="Search").fill(f"{ADAPTER}-v1")
    page.get_by_role("textbox", name="Search").press("Enter")
    wait(page)
    page.get_by_role("combobox", name="Details of").click()
    page.get_by_role("option", name=f"package: {ADAPTER}-v1-merged").wait_for()
    page.keyboard.press("Escape")

    # Activity: the job, the adapter and the publish are in the timeline's CSV export; the job's log says it completed.
    page.goto(f"{console_url}/activity")  # the sidebar folds its last sections under "View more"
    wait(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert any(r["kind"] == "package.published" and f"{ADAPTER}-v1-merged" in r["message"] for r in rows), rows
    kinds = {r["kind"] for r in rows if ADAPTER in r["message"] + r["details"]}
    assert {"job.queued", "job.completed", "adapter.saved", "package.published"} <= kinds, kinds
    assert {"job.queued", "job.started", "job.completed"} <= {
        r["kind"] for r in rows if f"publish of {ADAPTER}-v1-merged" in r["message"]
    }, rows
    page.get_by_role("tab", name="Job logs").click()
    wait(page)
    pick_job(page, wait, f"publish · {ADAPTER}-v1-merged")  # the newest job: the publish, with its stages
    page.get_by_text("step 3 of 5: verifying in a fresh process").wait_for()
    pick_job(page, wait, f"train · {ADAPTER}")
    page.get_by_text(f"completed: adapter {ADAPTER} v1 saved").wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0


def pick_job(page, wait, text: str) -> None:
    choose(page, wait, "Job", re.compile(re.escape(text)), typed=text)


def choose_theme(page, theme: str) -> None:
    """Pick `theme` in the Settings form's Theme select box."""
    page.get_by_test_id("stSelectbox").filter(has_text="Theme").click()
    page.get_by_role("option", name=theme, exact=True).click()


def app_background(page) -> str:
    return page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")


def app_text_colour(page) -> str:
    return page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).color")


def rgb(hex_colour: str) -> str:
    """'#f8f9fa' as the browser's computed style writes it: 'rgb(248, 249, 250)'."""
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def test_the_settings_theme_is_applied_at_the_next_rerun(console_url, browser_page, wait_for_streamlit):
    page, wait = browser_page, wait_for_streamlit
    page.goto(f"{console_url}/settings")
    wait(page)
    light = app_background(page)
    assert light == rgb(PALETTES["light"]["backgroundColor"])
    try:
        choose_theme(page, "dark")
        page.get_by_test_id("stBaseButton-primaryFormSubmit").click()
        wait(page)
        page.get_by_text("Saved: theme.").wait_for()
        dark = app_background(page)
        assert dark != light, f"the background stayed {light} after saving the dark theme"
        assert dark == rgb(PALETTES["dark"]["backgroundColor"])
        assert app_text_colour(page) == rgb(PALETTES["dark"]["textColor"])
        page.goto(f"{console_url}/models")  # and on every page after it, for this and any other session
        wait(page)
        assert app_background(page) == dark
    finally:
        page.goto(f"{console_url}/settings")
        wait(page)
        choose_theme(page, "light")
        page.get_by_test_id("stBaseButton-primaryFormSubmit").click()
        wait(page)
        page.get_by_text("Saved: theme.").wait_for()
    assert app_background(page) == light
