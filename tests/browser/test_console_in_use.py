"""Issue 11, the console under real use: each test is named after the numbered item it reproduces.

They need a real server and browser: restarts, reruns, fragment timers and widget state are what went wrong.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import Page, expect

from tests.browser.widgets import choose

if TYPE_CHECKING:
    from console_server import ConsoleServer

PEER_DATA = Path("/work/shared/peer-data")


def upload(page: Page, wait: Callable[[Page], None], path: Path) -> None:
    expander = page.get_by_test_id("stExpander").filter(has_text="Upload dataset")
    if expander.locator("details[open]").count() == 0:
        expander.get_by_text("Upload dataset").click()
        wait(page)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    wait(page)
    expect(page.get_by_test_id("stFileChip").filter(has_text=path.name)).to_be_visible()


def open_page(page: Page, url: str, wait: Callable[..., None], title: str) -> None:
    """Home, then `title` from the sidebar; a first page load of a fresh server is slow on a busy 2-core machine."""
    page.goto(url)
    wait(page, timeout_ms=120_000)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    wait(page, timeout_ms=120_000)
    assert page.get_by_test_id("stException").count() == 0


def set_number(page: Page, wait: Callable[[Page], None], label: str, value: object) -> None:
    box = page.get_by_role("spinbutton", name=label, exact=True)
    box.scroll_into_view_if_needed()
    box.fill(str(value))
    box.press("Enter")
    wait(page)


def set_text(page: Page, wait: Callable[[Page], None], label: str, value: str) -> None:
    box = page.get_by_role("textbox", name=label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait(page)


def open_advanced(page: Page, wait: Callable[[Page], None]) -> None:
    expander = page.get_by_test_id("stExpander").filter(has_text="Advanced settings")
    if expander.locator("details[open]").count() == 0:
        expander.get_by_text("Advanced settings").click()
        wait(page)


def queue_job(
    page: Page,
    wait: Callable[[Page], None],
    name: str,
    dataset: str,
    numbers: dict[str, object],
    choices: dict[str, str] | None = None,
) -> None:
    """Fill the Training Jobs form for the tiny model (`numbers`: number fields by label, `choices`: advanced
    selectboxes by label) and press Start Training."""
    choose(page, wait, "Base model", "tiny-llama")
    choose(page, wait, "Training dataset", dataset)
    set_text(page, wait, "Adapter name", name)
    open_advanced(page, wait)
    for label, value in numbers.items():
        set_number(page, wait, label, value)
    for label, option in (choices or {}).items():
        choose(page, wait, label, option)
    page.get_by_role("button", name=re.compile(r"Start Training$")).click()
    # The first submit imports the training stack (preflight): slow on a busy 2-core machine. The toast is looked
    # for while the run goes on: it shows for 10 s, and a run under load can take longer than that after it.
    expect(page.get_by_test_id("stToast").filter(has_text=f"Queued {name}")).to_be_visible(timeout=180_000)
    wait(page, timeout_ms=180_000)


def pick_job(page: Page, wait: Callable[[Page], None], job_id: str) -> None:
    """Open `job_id` in Job details: type its id in the picker, then click it."""
    choose(page, wait, "Job", re.compile(re.escape(job_id)), typed=job_id)


def job_states(home: Path) -> dict[str, dict]:
    """Every training job's state.json in the registry, by adapter name (a publish job, which another test may have
    left on the shared console, has a task instead of a training config)."""
    states = [json.loads(p.read_text()) for p in (home / "jobs").glob("job_*/state.json")]
    return {state["config"]["adapter_name"]: state for state in states if state["config"]}


def wait_for_state(home: Path, name: str, test: Callable[[dict], bool], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_states(home).get(name)
        if state is not None and test(state):
            return state
        time.sleep(0.2)
    pytest.fail(f"job {name} never reached the expected state: {job_states(home).get(name)}")


def serve_a_short_dataset(
    console_server, page: Page, wait: Callable[..., None], tmp_path: Path, monkeypatch, rows: int
) -> tuple[Path, ConsoleServer]:
    """The restart tests' start: a registry of their own holding `short_sft` (`rows` examples), a server on it, and
    its Training Jobs page open; the registry's folder and the server."""
    home = tmp_path / "home"
    monkeypatch.setenv("RMN_LORA_HOME", str(home))
    from services import upload_dataset

    examples = [
        {"instruction": f"Map adType 'v{i}' from Amazon to RMIS.", "output": f"placement_type: p{i}"}
        for i in range(rows)
    ]
    (tmp_path / "short.jsonl").write_text("".join(json.dumps(example) + "\n" for example in examples))
    upload_dataset("short_sft", tmp_path / "short.jsonl")
    server = console_server(home)
    open_page(page, server.url, wait, "Training Jobs")
    return home, server


def wait_for_a_checkpoint(home: Path, name: str, timeout: float) -> Path:
    """The folder of job `name` once it runs and has saved a checkpoint (a restart then has one to resume from)."""
    job_dir = home / "jobs" / wait_for_state(home, name, lambda s: s["status"] == "running", timeout)["id"]
    deadline = time.monotonic() + timeout
    while not list((job_dir / "checkpoints").glob("checkpoint-*/trainer_state.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    return job_dir


def restart(console_server, home: Path, page: Page, wait: Callable[..., None]) -> ConsoleServer:
    """`streamlit run` again on the same registry, and the first load after it, straight to Training Jobs."""
    server = console_server(home)
    page.goto(f"{server.url}/training_jobs")
    wait(page, timeout_ms=180_000)
    return server


@pytest.mark.timeout(2400)  # two server starts and two trainings on a 2-core machine others share
def test_item_1_restart_with_a_running_and_a_queued_job_both_finish(
    console_server, browser_page, wait_for_streamlit, tmp_path, monkeypatch
):
    """SIGTERM the server while one job runs and another waits; after `streamlit run` again the queued job trains
    by itself (it failed with "cannot import name 'TrainerCallback'") and the interrupted one resumes from its
    checkpoint when asked. Both complete; none fails. The running job trains data-parallel (one process per core,
    as auto does for a long job of a 100M+ model): its processes end with the server and the resume starts them
    again; the queued one is left to auto, which keeps a tiny model in one process."""
    import psutil

    page = browser_page
    home, server = serve_a_short_dataset(console_server, page, wait_for_streamlit, tmp_path, monkeypatch, rows=16)
    queue_job(
        page,
        wait_for_streamlit,
        "long_run",
        "short_sft",
        {"Max steps": 300, "Checkpoint every N steps": 5},
        {"Processes (data parallel)": "one per core"},
    )
    queue_job(
        page,
        wait_for_streamlit,
        "queued_run",
        "short_sft",
        {"Max steps": 10, "Checkpoint every N steps": 5},
        {"Processes (data parallel)": "auto"},  # the form keeps the last job's choice
    )
    job_dir = wait_for_a_checkpoint(home, "long_run", 900)
    # The ranks are forked from the server's process server (its child): they are its children's children.
    ranks = [
        child
        for child in psutil.Process(server.process.pid).children(recursive=True)
        if child.ppid() != server.process.pid
    ]
    assert len(ranks) == 2, "the long job does not train in one process per core"
    server.stop()
    gone, alive = psutil.wait_procs(ranks, timeout=60)
    assert not alive, f"training processes outlived the stopped server: {[rank.pid for rank in alive]}"
    states = job_states(home)
    assert states["long_run"]["status"] == "running", "the long job ended before the server stopped"
    assert states["queued_run"]["status"] == "queued"

    restart(console_server, home, page, wait_for_streamlit)
    expect(page.get_by_text("Page not found")).to_have_count(0)  # item 5
    queued = wait_for_state(home, "queued_run", lambda s: s["status"] in ("completed", "failed"), 900)
    assert queued["status"] == "completed", queued["error"]
    assert job_states(home)["long_run"]["status"] == "interrupted"
    page.locator(f".st-key-job_card_{job_dir.name}").get_by_role("button", name=re.compile(r"Resume$")).click()
    expect(page.get_by_test_id("stToast").filter(has_text="long_run queued to resume")).to_be_visible(timeout=120_000)
    resumed = wait_for_state(home, "long_run", lambda s: s["status"] in ("completed", "failed"), 900)
    assert resumed["status"] == "completed", resumed["error"]
    assert resumed["attempts"] == 2
    log = (job_dir / "train.log").read_text(encoding="utf-8")
    assert log.count("Data parallel is on: 2 single-thread processes") == 2, "started and resumed on 2 processes"
    queued_log = (home / "jobs" / queued["id"] / "train.log").read_text(encoding="utf-8")
    assert "Data parallel is auto: one process" in queued_log
    expect(page.get_by_text("COMPLETED", exact=True).first).to_be_visible(timeout=120_000)  # at the next 2 s poll
    assert page.get_by_test_id("stException").count() == 0


@pytest.mark.timeout(1200)  # two server starts on a 2-core machine others share
def test_item_1_an_interrupted_job_says_so_and_resumes_from_its_card(
    console_server, browser_page, wait_for_streamlit, tmp_path, monkeypatch
):
    """After a restart, the interrupted job's card said only INTERRUPTED: no Resume beside it and no word of what to
    do (Resume was in Job details, under a picker showing another job). The card now says the server stopped and
    from which step Resume continues, and resumes the job from there."""
    page = browser_page
    home, server = serve_a_short_dataset(console_server, page, wait_for_streamlit, tmp_path, monkeypatch, rows=8)
    queue_job(page, wait_for_streamlit, "cut_short", "short_sft", {"Max steps": 400, "Checkpoint every N steps": 2})
    job_dir = wait_for_a_checkpoint(home, "cut_short", 600)
    server.stop()
    assert job_states(home)["cut_short"]["status"] == "running", "the job ended before the server stopped"
    step = max(int(p.parent.name.removeprefix("checkpoint-")) for p in job_dir.glob("checkpoints/*/trainer_state.json"))

    restart(console_server, home, page, wait_for_streamlit)
    card = page.locator(f".st-key-job_card_{job_dir.name}")
    expect(card).to_contain_text("INTERRUPTED")
    expect(card).to_contain_text(
        f"The server stopped while this job trained. Resume continues from its checkpoint at step {step}."
    )
    card.get_by_role("button", name=re.compile(r"Resume$")).click()
    expect(page.get_by_test_id("stToast").filter(has_text="cut_short queued to resume")).to_be_visible(timeout=120_000)
    resumed = wait_for_state(home, "cut_short", lambda s: s["status"] not in ("interrupted", "queued"), 600)
    assert resumed["status"] in ("running", "completed"), resumed["error"]
    assert resumed["attempts"] == 2
    assert page.get_by_test_id("stException").count() == 0


def test_item_2_a_second_upload_gets_its_own_name_and_type(console_url, browser_page, wait_for_streamlit, tmp_path):
    """Choose an alpaca file, then (without importing) a chat file: the import form must hold the chat file's name
    and detected type, not the first file's (that once stored chat rows as a version of an alpaca dataset)."""
    page = browser_page
    first = tmp_path / "first_alpaca.json"
    second = tmp_path / "second_chat.jsonl"
    shutil.copy(PEER_DATA / "alpaca_en_demo.json", first)
    shutil.copy(PEER_DATA / "v1_sft_demo.jsonl", second)
    open_page(page, console_url, wait_for_streamlit, "Dataset Library")
    upload(page, wait_for_streamlit, first)
    name = page.get_by_role("textbox", name="Dataset name", exact=True)
    kind = page.get_by_role("combobox", name=re.compile("Dataset type"))
    expect(name).to_have_value("first_alpaca")
    expect(kind).to_have_value(re.compile("alpaca"))
    upload(page, wait_for_streamlit, second)
    expect(page.get_by_test_id("stAlert").filter(has_text="Detected")).to_contain_text("chat")
    expect(name).to_have_value("second_chat")
    expect(kind).to_have_value(re.compile("chat"))


def test_item_3_and_6_clone_config_fills_the_form(console_url, browser_page, wait_for_streamlit, console_home):
    """Job details → Clone config puts the job's settings in the form (it did nothing, even after a rerun), with a
    toast saying so (item 7)."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    # the first submit of a server may wait for the training libraries: minutes on a busy machine (queue_job waits)
    queue_job(page, wait_for_streamlit, "clone_source", "task_planning_sft", {"LoRA rank (r)": 4, "Max steps": 3})
    wait_for_streamlit(page, timeout_ms=180_000)
    # Item 6: the history shows the job just queued (it lagged one refresh behind the cards).
    jobs_on_disk = len(job_states(console_home))
    expect(page.get_by_text(re.compile(rf"Showing 1–\d+ of {jobs_on_disk}$"))).to_be_visible()
    wait_for_state(console_home, "clone_source", lambda s: s["status"] != "queued", 600)
    set_text(page, wait_for_streamlit, "Adapter name", "something_else")
    set_number(page, wait_for_streamlit, "LoRA rank (r)", 32)
    job_id = job_states(console_home)["clone_source"]["id"]
    pick_job(page, wait_for_streamlit, job_id)
    page.get_by_role("button", name=re.compile(r"Clone config$")).click()
    expect(page.get_by_test_id("stToast").filter(has_text="named clone_source_v2")).to_be_visible(timeout=60_000)
    wait_for_streamlit(page)
    expect(page.get_by_role("textbox", name="Adapter name", exact=True)).to_have_value("clone_source_v2")
    expect(page.get_by_role("spinbutton", name="LoRA rank (r)", exact=True)).to_have_value("4")
    expect(page.get_by_role("spinbutton", name="Max steps", exact=True)).to_have_value("3")


def test_item_3_the_job_actions_stay_put_while_the_job_runs_and_completes(
    console_url, browser_page, wait_for_streamlit, console_home
):
    """Job details redraws every 2 s: the loss chart appeared above Resume / Restart / Clone config at the first
    logged step and the final metrics at the end, so the buttons jumped down under the pointer and a click landed on
    the chart (the fresh-clone CI run lost a Clone config click that way). The buttons come first now."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    queue_job(page, wait_for_streamlit, "steady_buttons", "task_planning_sft", {"Max steps": 40})
    job_id = wait_for_state(console_home, "steady_buttons", lambda s: s["status"] != "queued", 600)["id"]
    pick_job(page, wait_for_streamlit, job_id)
    clone = page.get_by_role("button", name=re.compile(r"Clone config$"))
    before = clone.bounding_box()
    wait_for_state(console_home, "steady_buttons", lambda s: s["status"] == "completed", 600)
    page.wait_for_timeout(4500)  # the jobs panel redraws twice with the completed job, its chart and final metrics
    wait_for_streamlit(page)
    expect(page.get_by_text("Final metrics")).to_be_visible()
    after = clone.bounding_box()
    assert (after["x"], after["y"]) == (before["x"], before["y"])
    # The log is plain text (no highlighter code to load) in the code font, as a log reads: st.text's inner span
    # set the body font itself, so a rule on the text's box alone left the log in the proportional font.
    log = page.locator(f".st-key-job_log_{job_id} [data-testid='stText'] span")
    assert "monospace" in log.evaluate("element => getComputedStyle(element).fontFamily")


def test_item_4_the_form_keeps_its_values_across_fragment_runs_and_pages(console_url, browser_page, wait_for_streamlit):
    """The form showed minimum values it never had (learning rate 0, sequence length 16, seed 0) after the page's
    2-second fragments had run and the user came back; Start Training then refused an untouched form."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    open_advanced(page, wait_for_streamlit)
    page.wait_for_timeout(5000)  # the job fragments run twice
    set_text(page, wait_for_streamlit, "Adapter name", "untouched_form")
    page.wait_for_timeout(5000)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Home").click()
    wait_for_streamlit(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Training Jobs").click()
    wait_for_streamlit(page)
    open_advanced(page, wait_for_streamlit)
    page.wait_for_timeout(5000)
    page.get_by_role("textbox", name="Adapter name", exact=True).click()  # a rerun of the whole page
    # The form starts from the saved training defaults: JobConfig's own when none were saved.
    expected = {"Learning rate": 2e-4, "Max sequence length": 512, "Seed": 42, "LoRA rank (r)": 16}
    shown = {label: float(page.get_by_role("spinbutton", name=label, exact=True).input_value()) for label in expected}
    assert shown == pytest.approx(expected)
    expect(page.get_by_role("spinbutton", name="DPO beta", exact=True)).to_have_count(0)  # an SFT job's form


def test_item_4_advanced_settings_closed_and_opened_again_keep_what_was_typed(
    console_url, browser_page, wait_for_streamlit
):
    """Advanced settings draws its fields only while open (each number field costs Streamlit a copy of the session's
    widget state per run). What was typed in it stays: a value entered with Enter, and one typed just before the
    click that closes it; the page's fragments run while it is closed; opened again, it shows both."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    expect(page.get_by_role("spinbutton", name="Max steps", exact=True)).to_have_count(0)  # closed: not drawn
    open_advanced(page, wait_for_streamlit)
    set_number(page, wait_for_streamlit, "Max steps", 7)
    page.get_by_role("spinbutton", name="Seed", exact=True).fill("11")  # no Enter: the click below closes it
    page.get_by_test_id("stExpander").filter(has_text="Advanced settings").get_by_text("Advanced settings").click()
    wait_for_streamlit(page)
    expect(page.get_by_role("spinbutton", name="Max steps", exact=True)).to_have_count(0)
    page.wait_for_timeout(4500)  # the jobs fragments run twice while it is closed
    open_advanced(page, wait_for_streamlit)
    expected = {"Max steps": 7, "Seed": 11, "Learning rate": 2e-4}
    shown = {label: float(page.get_by_role("spinbutton", name=label, exact=True).input_value()) for label in expected}
    assert shown == pytest.approx(expected)


def test_item_4_a_cloned_form_keeps_its_values_across_pages_preset_and_slow_reruns(
    console_url, browser_page, wait_for_streamlit, console_home
):
    """The other ways the form could lose its values: Clone config, then another page and back (every widget's state
    is dropped there), then a preset applied and typing without waiting for the rerun. No field may show a value
    the user did not give it (the minimums: learning rate 0, sequence length 16, seed 0, DPO beta 0.01)."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    numbers = {"Max steps": 2, "Max sequence length": 320, "Seed": 7}
    queue_job(page, wait_for_streamlit, "nav_source", "task_planning_sft", numbers)
    # cloned once finished (the job's buttons moving as it completes is the test above)
    job = wait_for_state(console_home, "nav_source", lambda s: s["status"] == "completed", 600)
    job_id, config = job["id"], job["config"]
    pick_job(page, wait_for_streamlit, job_id)
    expect(page.get_by_text("Final metrics")).to_be_visible()
    page.get_by_role("button", name=re.compile(r"Clone config$")).click()
    # the clone's own toast (the earlier "Queued nav_source" one may still be showing)
    expect(page.get_by_test_id("stToast").filter(has_text="named nav_source_v2")).to_be_visible(timeout=60_000)
    wait_for_streamlit(page)
    for title in ("Home", "Adapters", "Training Jobs"):
        page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
        wait_for_streamlit(page, timeout_ms=120_000)
    page.wait_for_timeout(4500)  # the jobs fragment runs twice
    open_advanced(page, wait_for_streamlit)
    # the typed values, and the two the job took from the form's defaults
    assert (config["learning_rate"], config["dpo_beta"]) == (2e-4, 0.1)  # JobConfig's defaults: the form's, untouched
    untyped = {"Learning rate": config["learning_rate"]}  # DPO beta is not drawn for an SFT job
    cloned = {"Max steps": 2, "Max sequence length": 320, "Seed": 7, **untyped}
    shown = {label: float(page.get_by_role("spinbutton", name=label, exact=True).input_value()) for label in cloned}
    assert shown == pytest.approx(cloned)
    expect(page.get_by_role("textbox", name="Adapter name", exact=True)).to_have_value("nav_source_v2")
    # Typing in three fields without waiting for the reruns between them (a slow machine's reruns overlap).
    for label, value in (("Seed", 11), ("Max steps", 5), ("Max sequence length", 384)):
        box = page.get_by_role("spinbutton", name=label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    wait_for_streamlit(page, timeout_ms=120_000)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Home").click()
    wait_for_streamlit(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Training Jobs").click()
    wait_for_streamlit(page)
    open_advanced(page, wait_for_streamlit)
    typed = {"Seed": 11, "Max steps": 5, "Max sequence length": 384, **untyped}
    shown = {label: float(page.get_by_role("spinbutton", name=label, exact=True).input_value()) for label in typed}
    assert shown == pytest.approx(typed)


def test_item_6_the_job_picker_keeps_the_picked_job_while_its_status_changes(
    console_url, browser_page, wait_for_streamlit, console_home
):
    """The picker's labels said each job's status: when the picked job went from queued to running to completed,
    its label was no longer an option and the picker jumped to the newest job (or kept a stale "queued")."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    # the older job trains long enough to be picked while it runs (one job at a time: the newer one waits)
    queue_job(page, wait_for_streamlit, "picked_older", "task_planning_sft", {"Max steps": 150})
    queue_job(page, wait_for_streamlit, "picked_newer", "task_planning_sft", {"Max steps": 2})
    wait_for_streamlit(page, timeout_ms=180_000)
    job_id = job_states(console_home)["picked_older"]["id"]
    assert job_states(console_home)["picked_older"]["status"] != "completed", "picked after it finished"
    pick_job(page, wait_for_streamlit, job_id)
    for name in ("picked_older", "picked_newer"):
        wait_for_state(console_home, name, lambda s: s["status"] in ("completed", "failed"), 600)
    page.wait_for_timeout(4500)  # the jobs panel redraws twice with the new statuses
    wait_for_streamlit(page)
    picker = page.get_by_role("combobox", name="Job", exact=True)
    expect(picker).to_have_value(re.compile(re.escape(job_id)))
    expect(picker).not_to_have_value(re.compile(r"queued|running"))


def test_item_7_cancel_and_restart_each_confirm_what_they_changed(
    console_url, browser_page, wait_for_streamlit, console_home
):
    """Cancel, Restart and Resume changed only a badge: no word said the action was taken. Each now ends with a toast
    naming the job (Resume's is in the item 1 tests)."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    queue_job(page, wait_for_streamlit, "confirmed_cancel", "task_planning_sft", {"Max steps": 400})
    job_id = job_states(console_home)["confirmed_cancel"]["id"]
    card = page.locator(f".st-key-job_card_{job_id}")
    card.get_by_role("button", name=re.compile(r"Cancel$")).click()
    toast = page.get_by_test_id("stToast")
    expect(toast.filter(has_text=f"Cancel requested for confirmed_cancel ({job_id}).")).to_be_visible(timeout=60_000)
    wait_for_state(console_home, "confirmed_cancel", lambda s: s["status"] == "cancelled", 600)
    wait_for_streamlit(page)
    pick_job(page, wait_for_streamlit, job_id)
    page.get_by_role("button", name=re.compile(r"Restart$")).click()
    expect(toast.filter(has_text="Restarted confirmed_cancel as a new job.")).to_be_visible(timeout=60_000)
    states = [json.loads(p.read_text()) for p in console_home.glob("jobs/job_*/state.json")]
    again = [s["id"] for s in states if s["config"] and s["config"]["adapter_name"] == "confirmed_cancel"]
    assert len(again) == 2, "Restart queued one new job with the same config"
    new_id = max(again)
    # the new job is cancelled from its own card, queued or running: the same confirmation
    page.locator(f".st-key-job_card_{new_id}").get_by_role("button", name=re.compile(r"Cancel$")).click()
    expect(toast.filter(has_text=f"Cancel requested for confirmed_cancel ({new_id}).")).to_be_visible(timeout=60_000)
    state = console_home / "jobs" / new_id / "state.json"
    deadline = time.monotonic() + 600
    while json.loads(state.read_text())["status"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(state.read_text())["status"] == "cancelled"


def test_item_9_an_error_shows_its_text_literally(console_url, browser_page, wait_for_streamlit):
    """A refused setting named `__init__` was shown as a bold "init" (the error went through Markdown)."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    choose(page, wait_for_streamlit, "Base model", "tiny-llama")
    set_text(page, wait_for_streamlit, "Adapter name", "literal_errors")
    open_advanced(page, wait_for_streamlit)
    set_text(page, wait_for_streamlit, "Target modules (comma separated, or all-linear)", "__init__")
    page.get_by_role("button", name=re.compile(r"Start Training$")).click()
    wait_for_streamlit(page, timeout_ms=180_000)
    alert = page.get_by_test_id("stAlert").filter(has_text="do not exist")
    expect(alert).to_contain_text("Target module(s) __init__ do not exist in tiny-llama")
    assert alert.locator("strong, b, a").count() == 0


def test_item_5_every_page_opens_by_its_url_without_a_page_not_found_dialog(
    console_url, browser_page, wait_for_streamlit
):
    """Opening /training (the page's url_path) on a fresh session showed "Page not found … Running the app's main
    page" over the page: Streamlit also reads the views/ folder, whose file names it expects as URLs."""
    page = browser_page
    page.goto(console_url)
    wait_for_streamlit(page, timeout_ms=120_000)
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert len(hrefs) >= 8
    for href in hrefs:
        fresh = page.context.new_page()
        fresh.goto(href)
        wait_for_streamlit(fresh, timeout_ms=120_000)
        fresh.wait_for_timeout(500)
        assert fresh.get_by_text("Page not found").count() == 0, href
        fresh.close()


def test_walk_the_adapter_type_follows_the_training_dataset(
    console_url, browser_page, wait_for_streamlit, console_home
):
    """The closing walk: the form opened with adapter type "retailer" beside task_planning_sft, and kept as it was it
    trained "retailer" adapters on planning data (Federation then offered one as a retailer adapter). A dataset that
    says what it trains (its generator does) sets the type whenever it is chosen; a type chosen against it stays,
    and says so beside it."""
    page = browser_page
    open_page(page, console_url, wait_for_streamlit, "Training Jobs")
    adapter_type = page.get_by_role("combobox", name="Adapter type", exact=True)
    dataset = page.get_by_role("combobox", name="Training dataset", exact=True)
    # as it opens, the type is what the form's first dataset trains (an upload's leaves JobConfig's default)
    demo = {"task_planning_sft": "task", "retailer_amazon_sft": "retailer", "retailer_walmart_sft": "retailer"}
    expect(adapter_type).to_have_value(demo.get(dataset.input_value(), "retailer"))
    choose(page, wait_for_streamlit, "Training dataset", "retailer_amazon_sft")
    expect(adapter_type).to_have_value("retailer")
    choose(page, wait_for_streamlit, "Training type", "DPO")  # the SFT dataset goes: the first DPO one comes
    expect(dataset).to_have_value("policy_creative_dpo")
    expect(adapter_type).to_have_value("policy")
    choose(page, wait_for_streamlit, "Training type", "SFT")
    choose(page, wait_for_streamlit, "Training dataset", "retailer_amazon_sft")
    choose(page, wait_for_streamlit, "Adapter type", "domain")
    choose(page, wait_for_streamlit, "Training dataset", "task_planning_sft")
    expect(adapter_type).to_have_value("task")
    mismatch = page.get_by_test_id("stAlert").filter(has_text="was made to train")
    expect(mismatch).to_have_count(0)
    choose(page, wait_for_streamlit, "Adapter type", "retailer")  # the user's choice, against the data: kept, shown
    expect(mismatch).to_contain_text(
        "task_planning_sft was made to train a task adapter; this one will be a retailer adapter."
    )
    choose(page, wait_for_streamlit, "Adapter type", "task")
    expect(mismatch).to_have_count(0)
    queue_job(page, wait_for_streamlit, "typed_by_its_data", "task_planning_sft", {"Max steps": 1})
    assert job_states(console_home)["typed_by_its_data"]["config"]["adapter_type"] == "task"
