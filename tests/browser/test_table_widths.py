"""The console's widest tables show every column at 1400x1000 with names as long as real ones: on the issue 11
closing walk the Evaluations runs table hid Cost, Dataset Library hid Source and Models hid Status off the right."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.test_console_in_use import open_page

LONG = "retailer_walmart_sponsored_products_sft"  # a real-length dataset and adapter name


def write_runs(home: Path) -> None:
    """Two finished runs as the run manager stores them (config.json + state.json), with long real-style labels:
    an SFT run with every text metric and a DPO run with a preference figure, so the table has all its columns."""
    from evaluation.run_folder import RunFolder
    from evaluation.runs import RunConfig, RunState, RunStatus
    from evaluation.targets import TargetSpec
    from registry.storage import atomic_write_json

    metrics = [
        {"exact_match": 0.3, "token_f1": 0.612, "rouge_l": 0.598, "perplexity": 1.87, "latency_p50_ms": 14434.0},
        {"preference_accuracy": 0.75, "latency_p50_ms": 161090.0},
    ]
    for number, figures in enumerate(metrics):
        run_id = f"eval_20261207_19010{number}_b8eb1{number}"
        target = TargetSpec(kind="adapter", ref=LONG, version=3, label=f"{LONG} v3")
        config = RunConfig(target=target, dataset=f"{LONG}_eval", source={"name": f"{LONG}_eval"}, metrics=[])
        now = datetime(2026, 12, 7, 19, 1, number, tzinfo=UTC)
        state = RunState(
            id=run_id, config=config, status=RunStatus.COMPLETED, created=now, finished=now, total=10, done=10
        )
        state.metrics, state.cost = figures, 0.0005
        folder = RunFolder(home / "evaluations" / run_id)
        folder.path.mkdir(parents=True)
        atomic_write_json(folder.config, config.model_dump(mode="json"))
        atomic_write_json(folder.state, state.model_dump(mode="json"))


def test_the_runs_library_and_models_tables_show_every_column_at_1400_px(
    console_models, browser_page, wait_for_streamlit, hidden_width, tmp_path: Path, monkeypatch
):
    from console_server import ConsoleServer

    home = tmp_path / "home"
    monkeypatch.setenv("RMN_LORA_HOME", str(home))
    from services import upload_dataset
    from services.demo import seed_demo

    seed_demo()
    (tmp_path / "rows.jsonl").write_text('{"instruction": "Map adType sp", "output": "placement_type: sp"}\n')
    upload_dataset(LONG, tmp_path / "rows.jsonl")
    write_runs(home)
    models = tmp_path / "models"
    models.mkdir()
    (models / "SmolLM2-135M-Instruct-RMN-v2").symlink_to(console_models / "tiny-llama", target_is_directory=True)
    server = ConsoleServer(home, models, tmp_path / "server.log")
    try:
        page = browser_page
        page.set_viewport_size({"width": 1400, "height": 1000})
        for title, last_column, shown in [
            ("Evaluations", "Cost", "retailer_walmart_sponsored"),
            ("Dataset Library", "Source", "retailer_walmart_sponsored"),
            ("Models", "Status", "SmolLM2-135M-Instruct-RMN-v2"),
        ]:
            open_page(page, server.url, wait_for_streamlit, title)
            if title == "Evaluations":
                page.get_by_role("tab", name="Results").click()
                wait_for_streamlit(page)
            # the grid draws only the columns in sight: its first table on the page is the one to measure
            table = page.get_by_test_id("stDataFrame").first
            expect(table).to_contain_text(shown)
            page.screenshot(path=str(tmp_path / f"{title}.png"), full_page=True)
            assert hidden_width(table) <= 1, f"{title}: the table is wider than the page, {last_column} is cut off"
            expect(table).to_contain_text(last_column)
        print(f"screenshots: {tmp_path}")
    finally:
        server.stop()
