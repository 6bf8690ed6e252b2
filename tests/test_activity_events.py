"""Jobs, adapters and federations write to the activity feed, and Home's Recent activity shows them."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from services import recent_activity, submit_training_job, upload_dataset
from services.training import job_manager
from tests.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]


def test_home_shows_a_training_jobs_queue_start_completion_and_adapter(registry, tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("RMN_LORA_MODELS", str(models))
    build_tiny_model(models / "tiny-llama")
    rows = [{"instruction": f"Map value 'v{i}' to RMIS.", "output": f"placement_type: p{i}"} for i in range(8)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upload_dataset("events_sft", tmp_path / "m.jsonl")

    job_id = submit_training_job(
        "retailer", "events_probe", "events_sft", config={"max_steps": 2, "batch_size": 4}, base_model="tiny-llama"
    )
    assert job_manager().wait(job_id, timeout=300).status == "completed"

    kinds = [event["kind"] for event in recent_activity(limit=20)]
    for kind in ("job.queued", "job.started", "job.completed", "adapter.saved"):
        assert kind in kinds, f"{kind} missing from {kinds}"
    assert all(event.get("job") == job_id for event in recent_activity(limit=20) if event["kind"].startswith("job."))

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    shown = at.dataframe[0].value
    assert {"job.started", "job.completed"} <= set(shown["Event"])
    details = " ".join(shown["Details"])
    assert "Started training events_probe" in details and "Completed training: adapter events_probe v1" in details


def test_a_cancelled_job_and_a_failed_one_are_in_the_feed(registry, tmp_path, monkeypatch):
    from services import delete_dataset
    from training.config import build_config
    from training.jobs import JobManager

    models = tmp_path / "models"
    monkeypatch.setenv("RMN_LORA_MODELS", str(models))
    build_tiny_model(models / "tiny-llama")
    rows = [{"instruction": f"Say {i}.", "output": f"{i}"} for i in range(8)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name in ("say_sft", "gone_sft"):
        upload_dataset(name, tmp_path / "s.jsonl")
    manager = JobManager(registry, concurrency=1)
    manager.concurrency = 0  # hold the queue: nothing starts until it is raised again
    cancelled = manager.submit(build_config(adapter_name="say", base_model="tiny-llama", train_dataset="say_sft"))
    manager.cancel(cancelled.id)
    doomed = manager.submit(build_config(adapter_name="gone", base_model="tiny-llama", train_dataset="gone_sft"))
    delete_dataset("gone_sft")
    manager.concurrency = 1
    manager.submit(build_config(adapter_name="say", base_model="tiny-llama", train_dataset="say_sft", max_steps=1))
    assert manager.wait(doomed.id, timeout=300).status == "failed"

    events = recent_activity(limit=50)
    assert any(e["kind"] == "job.cancelled" and e["job"] == cancelled.id for e in events)
    failed = [e for e in events if e["kind"] == "job.failed"]
    assert failed and failed[0]["job"] == doomed.id and "gone_sft" in failed[0]["message"]
