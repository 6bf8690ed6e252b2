"""The job manager and the training API on tiny models: queue, states, cancel, restart, and resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services import ConsoleError, upload_dataset
from services.training import cancel_job, get_job_status, job_manager, list_jobs, submit_training_job
from tests.tiny_model import build_tiny_model
from training.adapters import get_adapter
from training.jobs import JobManager, JobStatus

ROWS = [
    {
        "instruction": f"Map field 'adType' with value '{code}' from Amazon to RMIS.",
        "input": "",
        "output": f"placement_type: {name}",
    }
    for code, name in [
        ("sp", "sponsored_product"),
        ("sd", "sponsored_display"),
        ("video", "video"),
        ("onsite_disp", "onsite_display"),
    ]
] * 4
FAST = {
    "max_steps": 6,
    "batch_size": 4,
    "lora_r": 4,
    "lora_alpha": 8,
    "max_seq_length": 64,
    "save_steps": 2,
    "learning_rate": 1e-3,
    "epochs": None,
}


@pytest.fixture
def tiny_setup(registry, tmp_path):
    base = build_tiny_model(tmp_path / "tiny-base")
    source = tmp_path / "mapping.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    upload_dataset("mapping_sft", source)
    return registry, base


def test_api_job_completes_and_registers_its_adapter(tiny_setup):
    registry, base = tiny_setup
    job_id = submit_training_job("retailer", "amazon_tiny", "mapping_sft", config=FAST, base_model=str(base))
    job = job_manager().wait(job_id, timeout=300)
    status = get_job_status(job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert status["status"] == "completed" and status["progress"] == 1.0
    assert status["metrics"]["step"] == 6
    adapter = get_adapter("amazon_tiny")
    assert Path(status["adapter_path"]) == adapter.path
    assert (adapter.path / "adapter_model.safetensors").is_file() and (adapter.path / "adapter_config.json").is_file()
    assert adapter.job_id == job_id
    assert [j.id for j in list_jobs()] == [job_id]
    steps = [row["step"] for row in job_manager().metrics(job_id)]
    assert steps == sorted(steps) and steps[-1] == 6


def test_a_library_dataset_with_an_empty_answer_trains_on_the_other_records(tiny_setup, tmp_path):
    """Regression: the browser tour's alpaca upload (one empty output, one duplicate) failed the whole job."""
    registry, base = tiny_setup
    rows = [
        {
            "instruction": f"Write a headline for sponsored product number {i}.",
            "input": "",
            "output": f"Headline {i}: fresh and fast.",
        }
        for i in range(30)
    ]
    rows += [dict(rows[3]), {"instruction": "Summarise last week's campaign.", "input": "", "output": ""}]
    (tmp_path / "tour_alpaca.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upload_dataset("tour_alpaca", tmp_path / "tour_alpaca.jsonl")
    job_id = submit_training_job("task", "tour", "tour_alpaca", config=FAST, base_model=str(base))
    job = job_manager().wait(job_id, timeout=300)
    assert job.status == JobStatus.COMPLETED, job.error
    assert "Skipped 1 of 32 records of tour_alpaca with nothing to learn" in job_manager().log_text(job_id)
    assert "record 32" in job_manager().log_text(job_id)


def test_a_dataset_with_no_answer_at_all_fails_with_the_reason(tiny_setup, tmp_path):
    registry, base = tiny_setup
    rows = [{"instruction": f"Summarise campaign {i}.", "input": "", "output": ""} for i in range(4)]
    (tmp_path / "empty.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upload_dataset("no_answers", tmp_path / "empty.jsonl")
    job = job_manager().wait(
        submit_training_job("task", "none", "no_answers", config=FAST, base_model=str(base)), timeout=300
    )
    assert job.status == JobStatus.FAILED
    assert "no records to train on (record 1: the answer is empty" in job.error


def test_bad_submissions_create_no_job(tiny_setup):
    registry, base = tiny_setup
    cases = [
        ("retailer", "bad/name", "mapping_sft", FAST),
        ("retailer", "ok", "no_such_dataset", FAST),
        ("retailer", "ok", "mapping_sft", {**FAST, "lora_r": 0}),
        ("retailer", "ok", "mapping_sft", {**FAST, "learning_rate": -1}),
        ("retailer", "ok", "mapping_sft", {**FAST, "objective": "dpo"}),
        ("retailer", "ok", "mapping_sft", {**FAST, "target_modules": ["no_such_proj"]}),
        ("wizard", "ok", "mapping_sft", FAST),
    ]
    for adapter_type, name, dataset, config in cases:
        with pytest.raises(ConsoleError):
            submit_training_job(adapter_type, name, dataset, config=config, base_model=str(base))
    with pytest.raises(ConsoleError, match="not available offline|not found|No base model"):
        submit_training_job("retailer", "ok", "mapping_sft", config=FAST, base_model="meta-llama/Llama-3.1-8B-Instruct")
    assert list_jobs() == [] and not [p for p in registry.jobs.iterdir() if p.is_dir()]


def test_queue_respects_the_limit_and_cancels(tiny_setup):
    registry, base = tiny_setup
    manager = job_manager()
    long_job = submit_training_job(
        "retailer", "long", "mapping_sft", config={**FAST, "max_steps": 400}, base_model=str(base)
    )
    waiting = submit_training_job("retailer", "waiting", "mapping_sft", config=FAST, base_model=str(base))
    deadline = time.time() + 600  # generous: a loaded machine starts it late
    while manager.get(long_job).status != JobStatus.RUNNING and time.time() < deadline:
        time.sleep(0.2)
    assert manager.get(long_job).status == JobStatus.RUNNING, "the first job never started"
    assert manager.get(waiting).status == JobStatus.QUEUED
    assert cancel_job(waiting).status == JobStatus.CANCELLED
    cancel_job(long_job)
    assert manager.wait(long_job, timeout=120).status == JobStatus.CANCELLED
    assert manager.get(waiting).status == JobStatus.CANCELLED
    with pytest.raises(ConsoleError, match="already cancelled"):
        cancel_job(waiting)
    restarted = manager.restart(waiting)
    assert restarted.restarted_from == waiting and restarted.config == manager.get(waiting).config
    assert manager.wait(restarted.id, timeout=300).status == JobStatus.COMPLETED


KILLED_WORKER = """
import sys, time
from services.training import submit_training_job, job_manager
from training.jobs import JobStatus
job_id = submit_training_job("retailer", "killed", "mapping_sft", config=dict(
    max_steps=40, batch_size=4, lora_r=4, lora_alpha=8, max_seq_length=64, save_steps=2, epochs=None),
    base_model=sys.argv[1])
print(job_id, flush=True)
time.sleep(600)
"""


def test_killed_process_leaves_an_interrupted_job_that_resumes_from_its_checkpoint(tiny_setup):
    registry, base = tiny_setup
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_WORKER, str(base)],
        cwd=Path(__file__).parent,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    job_id = worker.stdout.readline().strip()
    probe = JobManager.__new__(JobManager)
    probe.registry = registry
    deadline = time.time() + 600  # the child imports the training stack first: minutes on a loaded machine
    while time.time() < deadline and not JobManager.latest_checkpoint(probe, job_id):
        time.sleep(0.2)
    checkpoint = JobManager.latest_checkpoint(probe, job_id)
    assert checkpoint is not None, "the worker wrote no checkpoint in time"
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)

    manager = job_manager()
    job = manager.get(job_id)
    assert job.status == JobStatus.INTERRUPTED
    saved_step = int(manager.latest_checkpoint(job_id).name.split("-")[-1])
    manager.resume(job_id)
    finished = manager.wait(job_id, timeout=300)
    assert finished.status == JobStatus.COMPLETED, finished.error
    assert finished.attempts == 2
    steps = [row["step"] for row in manager.metrics(job_id)]
    assert steps[-1] == 40 and saved_step >= 2
    assert len(steps) == len(set(steps)), "the resumed run started again from step 0"
    assert "resuming from checkpoint" in manager.log_text(job_id)


def test_held_out_evaluation_is_scored_by_generation(tiny_setup, tmp_path):
    registry, base = tiny_setup
    held_out = [{"prompt": r["instruction"], "reference": r["output"]} for r in ROWS[:4]]
    (tmp_path / "held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    upload_dataset("mapping_eval", tmp_path / "held.jsonl")
    job_id = submit_training_job(
        "retailer", "scored", "mapping_sft", config={**FAST, "eval_dataset": "mapping_eval"}, base_model=str(base)
    )
    job = job_manager().wait(job_id, timeout=300)
    assert job.status == JobStatus.COMPLETED, job.error
    metrics = get_adapter("scored").metrics
    assert metrics["eval_prompts"] == 4 and 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_loss" in metrics
    log = job_manager().log_text(job_id)
    assert "Held-out generation on 4 prompts" in log
    misses = [line for line in log.splitlines() if "miss: answered" in line]  # each wrong answer beside its reference
    assert len(misses) == round((1 - metrics["eval_accuracy"]) * 4) > 0
    assert f"Held-out misses ({len(misses)} of 4):" in log
    assert all(any(f"reference {r['reference']!r}" in line for r in held_out) for line in misses)
    assert "loss" not in job_manager().metrics(job_id)[-1]  # the last line is the final evaluation's
    progress = job_manager().progress(job_id)  # the job card still shows the last training loss and rate
    assert progress.step == 6 and None not in (progress.loss, progress.learning_rate, progress.eval_loss)


def test_scores_count_exact_answers_only():
    from training.evaluation import token_f1

    assert token_f1("placement_type: video", "placement_type: video") == 1.0
    assert token_f1("placement_type: sponsored_product", "placement_type: video") < 1.0
    assert token_f1("", "cost: 1.25") == 0.0
