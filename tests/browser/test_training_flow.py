"""Start a job from the form, watch the progress bar move, see it complete and its adapter appear."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.widgets import choose

# Enough tiny steps that the job outlasts several 2 s polls of the job card even on a quiet machine.
STEPS = 200


def progress_values(card) -> list[float]:
    """The percentages a job card's progress bar shows as its text."""
    texts = card.get_by_test_id("stProgress").all_inner_texts()
    return [float(match) for text in texts for match in re.findall(r"(\d+)%", text)]


def job_card(page, adapter: str):
    """The card of the job that trains `adapter`. The page lists the last finished jobs too, so a bare "COMPLETED"
    may be another job's: in the full browser suite earlier tests leave completed jobs on the session's server."""
    return page.locator('[class*="st-key-job_card_"]').filter(has=page.get_by_text(adapter, exact=True))


def efficiency_shown(card) -> bool:
    """The running job's card gives its compute rate and the share of the matmul peak measured at job start."""
    captions = card.get_by_test_id("stCaptionContainer").all_inner_texts()
    return any(re.search(r"tok/s \([\d.,]+ GFLOP/s, \d+% of matmul peak\)", text) for text in captions)


def queue_count(page, label: str):
    """The value of the Training queue card's metric `label` ("Active", "Queued")."""
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return card.get_by_test_id("stMetricValue")


@pytest.mark.timeout(600)  # it may first wait for a job an earlier test left running, then trains its own
def test_job_from_the_form_trains_and_registers_its_adapter(console_url, browser_page, wait_for_streamlit, tmp_path):
    page = browser_page
    page.goto(console_url)
    wait_for_streamlit(page)
    page.get_by_role("link", name="Training Jobs").click()
    # Jobs earlier tests started on this server run first, one at a time on the same cores, and keep the page's
    # fragments busy: start from an idle queue, so the job below runs while the test watches it.
    expect(queue_count(page, "Active")).to_have_text("0", timeout=240_000)
    expect(queue_count(page, "Queued")).to_have_text("0")
    wait_for_streamlit(page)
    choose(page, wait_for_streamlit, "Base model", "tiny-llama")
    choose(page, wait_for_streamlit, "Training dataset", "task_planning_sft")
    page.get_by_role("textbox", name="Adapter name").fill("browser_tiny")
    page.get_by_role("textbox", name="Adapter name").press("Enter")
    wait_for_streamlit(page)
    page.get_by_text("Advanced settings").click()
    wait_for_streamlit(page)  # its fields are drawn by the rerun that opening it starts
    steps = page.get_by_role("spinbutton", name="Max steps")
    steps.fill(str(STEPS))
    steps.press("Enter")
    wait_for_streamlit(page)
    page.get_by_role("button", name=re.compile(r"Start Training$")).click()
    # Looked for while the run goes on: the toast shows for 10 s, and the submit (its checks import the training
    # stack when no earlier test did) can take longer than that after it on a busy machine.
    expect(page.get_by_test_id("stToast").filter(has_text="Queued browser_tiny")).to_be_visible(timeout=180_000)
    wait_for_streamlit(page, timeout_ms=180_000)

    seen: set[float] = set()
    efficiency = False
    deadline = time.monotonic() + 600  # generous for a loaded machine
    card = job_card(page, "browser_tiny")
    card.wait_for()
    completed = card.get_by_text("COMPLETED", exact=True)
    while time.monotonic() < deadline and not completed.is_visible():
        seen.update(v for v in progress_values(card) if 0 < v < 100)
        if not efficiency and efficiency_shown(card):
            efficiency = True
            page.screenshot(path=str(tmp_path / "running-job-card.png"), full_page=True)
        page.wait_for_timeout(500)
    assert completed.is_visible(), "the job did not complete in time"
    assert len(seen) >= 2, f"the progress bar did not move while training (saw {sorted(seen)})"
    assert efficiency, "the running job's card never showed its GFLOP/s and share of the matmul peak"
    assert page.locator('[data-testid="stException"]').count() == 0

    page.get_by_role("link", name="Adapters").click()
    wait_for_streamlit(page)
    picker = page.get_by_role("combobox", name="Adapter version")
    picker.wait_for()
    assert picker.input_value() == "browser_tiny v1"
    assert page.get_by_role("button", name=re.compile(r"Download \(zip\)$")).is_visible()
