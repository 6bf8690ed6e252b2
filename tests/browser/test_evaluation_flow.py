"""Run two evaluations from the Evaluations page (the tiny base model, then an adapter trained on it), read a run's
metrics and per-example rows, compare the two runs and see the significance; then every Analytics & Monitoring
page renders with that data."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.widgets import choose

RUN_MS = 420_000  # an evaluation loads the model on a possibly busy 2-core machine
FIRST_VISIT_MS = 120_000


def open_page(page: Page, wait: Callable[..., None], title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    wait(page, FIRST_VISIT_MS)
    assert page.get_by_test_id("stException").count() == 0, f"{title} shows a traceback"


def metric(page: Page, label: str):
    card = page.get_by_test_id("stMetric").filter(
        has=page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    )
    return card.get_by_test_id("stMetricValue")


def run_one(page: Page, wait: Callable[..., None], target: str, home: Path) -> None:
    page.get_by_role("tab", name="Run").click()
    choose(page, wait, "Target", target)
    choose(page, wait, "Dataset", re.compile(r"^mapper_sft · SFT"), typed="mapper_sft")
    limit = page.get_by_role("spinbutton", name="Examples")
    limit.fill("6")
    tokens = page.get_by_role("spinbutton", name="Max new tokens")
    tokens.fill("32")  # the reference is 22 tokens of the tiny tokenizer (plus end-of-sequence)
    page.get_by_role("button", name="Run evaluation").click()
    expect(page.get_by_test_id("stToast").filter(has_text="Queued eval_")).to_be_visible(timeout=60_000)
    wait(page)
    page.get_by_role("tab", name="Results").click()
    # the run page polls and reruns the app when the run finishes: its metric cards appear then
    try:
        expect(metric(page, "Exact match")).to_have_text(re.compile(r"^\d+\.\d%$"), timeout=RUN_MS)
    except AssertionError:
        for state in sorted(home.glob("evaluations/eval_*/state.json")):
            print(state.read_text()[:600])
        raise
    wait(page)


@pytest.mark.timeout(1800)  # includes training the tiny adapters (session fixture) and a short job
def test_run_compare_and_analytics(
    federation_adapters,
    console_home: Path,
    console_models: Path,
    console_url,
    browser_page,
    wait_for_streamlit,
    hidden_width,
    tmp_path: Path,
):
    _train_a_short_job(console_home, console_models)
    page, wait = browser_page, wait_for_streamlit
    page.goto(console_url)
    wait(page)
    open_page(page, wait, "Evaluations")

    run_one(page, wait, "Base · tiny-llama", console_home)
    expect(metric(page, "Exact match")).to_have_text("0.0%")
    rows = page.get_by_test_id("stDataFrame").filter(has_text="prediction")
    expect(rows).to_be_visible()
    expect(rows).to_contain_text("placement_type: sponsored_product")  # the reference column
    page.get_by_test_id("stCheckbox").filter(has_text="Failures only").locator("label").click()
    wait(page)
    expect(page.get_by_text(re.compile(r"Showing 1–6 of 6"))).to_be_visible()

    run_one(page, wait, "Adapter · mapper v1", console_home)
    # the session's 80-step tiny adapter answers the mapping but does not stop after it: no exact match, F1 above 0
    expect(metric(page, "Token F1")).not_to_have_text("0.0%")
    expect(page.get_by_text("Accuracy per RMIS field")).to_be_visible()
    # the picker was drawn while the run was queued: it must not keep saying so once the run completed
    picker = page.get_by_role("combobox", name="Open run", exact=True)
    expect(picker).to_have_value(re.compile(r"mapper v1"))
    expect(picker).not_to_have_value(re.compile(r"queued|running"))
    runs = page.get_by_test_id("stDataFrame").filter(has_text="Token F1").first
    assert hidden_width(runs) <= 1, "the list of runs is wider than the page: its last columns are cut off"
    page.screenshot(path=str(tmp_path / "evaluation-run.png"), full_page=True)

    page.get_by_role("tab", name="Compare").click()
    compare = page.get_by_role("combobox", name="Runs to compare (the first is the baseline)")
    compare.click()
    page.get_by_role("option", name=re.compile(r"tiny-llama \(base\)")).first.click()
    wait(page)
    compare.click()
    page.get_by_role("option", name=re.compile(r"mapper v1 on mapper_sft")).first.click()
    wait(page)
    page.keyboard.press("Escape")
    expect(metric(page, "Exact match (McNemar, exact)")).to_have_text(re.compile(r"^p [=<] "), timeout=30_000)
    expect(page.get_by_text(re.compile(r"Token F1: \+0\.\d{3}, 95% interval \[\+.*\(excludes 0\)"))).to_be_visible()
    # an SFT comparison has no preference figure: its column is left out, not shown with "None" in every row
    compared = page.get_by_role("tabpanel", name="Compare").get_by_test_id("stDataFrame").first
    expect(compared).to_contain_text("Token F1")
    expect(compared).not_to_contain_text("Preference")
    page.screenshot(path=str(tmp_path / "evaluation-compare.png"), full_page=True)
    print(f"screenshots: {tmp_path}")

    open_page(page, wait, "Training Metrics")
    expect(page.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("stPlotlyChart").filter(has_text="Training loss")).to_be_visible()
    page.screenshot(path=str(tmp_path / "training-metrics.png"), full_page=True)

    open_page(page, wait, "Performance Dashboard")
    table = page.get_by_test_id("stDataFrame").first
    expect(table).to_contain_text("mapper v1")
    expect(table).to_contain_text("tiny-llama (base)")
    assert hidden_width(table) <= 1, "the table is wider than the page: its last columns are cut off"
    expect(page.get_by_test_id("stPlotlyChart").filter(has_text="Requests per minute")).to_be_visible()
    expect(page.get_by_text("Cost of training jobs and evaluations")).to_be_visible()
    page.screenshot(path=str(tmp_path / "performance.png"), full_page=True)

    open_page(page, wait, "System Health")
    expect(metric(page, "CPU")).to_have_text(re.compile(r"^\d+%$"))
    expect(metric(page, "This server (RSS)")).to_have_text(re.compile(r"MB|GB"))
    expect(page.get_by_text(re.compile(r"no NVIDIA GPU|GPU reading"))).to_be_visible()
    page.screenshot(path=str(tmp_path / "system-health.png"), full_page=True)

    open_page(page, wait, "Home")
    expect(page.get_by_role("link", name="System Health").last).to_be_visible()


def _train_a_short_job(home: Path, models: Path) -> None:
    """One job through the job manager (so it is listed with its metrics), on the tiny base model, 12 steps."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(home))
        patch.setenv("RMN_LORA_MODELS", str(models))
        from services.training import job_manager, submit_training_job

        job_id = submit_training_job(
            "retailer",
            "metrics_demo",
            "mapper_sft",
            config={"max_steps": 12, "batch_size": 4, "logging_steps": 2, "save_steps": 1000, "epochs": None},
            base_model="tiny-llama",
        )
        assert job_manager().wait(job_id, timeout=300).status == "completed"


def test_enter_in_a_field_of_the_run_form_queues_nothing(
    console_url, console_home: Path, browser_page, wait_for_streamlit
):
    """Enter in "Examples" (to take the value, as in every other number box of the console) submitted the form: on
    the issue 11 closing walk three runs were queued for one click, the first with the default max new tokens the
    user was about to change. Only the button starts a run."""
    page, wait = browser_page, wait_for_streamlit
    page.goto(console_url)
    wait(page)
    open_page(page, wait, "Evaluations")
    page.get_by_role("tab", name="Run").click()
    before = set(console_home.glob("evaluations/eval_*"))
    for label, value in (("Examples", "2"), ("Max new tokens", "16")):
        box = page.get_by_role("spinbutton", name=label)
        box.fill(value)
        box.press("Enter")
        page.wait_for_timeout(2000)  # not wait(page): a queued run keeps the page polling
    assert set(console_home.glob("evaluations/eval_*")) == before, "Enter queued an evaluation"
    wait(page)
    expect(page.get_by_test_id("stToast").filter(has_text="Queued eval_")).to_have_count(0)
    expect(page.get_by_role("spinbutton", name="Max new tokens")).to_have_value("16")
