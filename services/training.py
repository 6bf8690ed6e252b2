"""Training API (seed 001): submit, watch and cancel jobs. One job manager per process and registry."""

import threading
from pathlib import Path
from typing import Any

from services.registry import open_registry
from training.config import build_config
from training.jobs import JobManager, JobState

_managers: dict[Path, JobManager] = {}
_managers_lock = threading.Lock()


def job_manager() -> JobManager:
    """The process-wide manager for the current registry (the UI wraps this in st.cache_resource)."""
    registry = open_registry()
    with _managers_lock:
        if registry.root not in _managers:
            _managers[registry.root] = JobManager(registry)
        return _managers[registry.root]


def submit_training_job(
    adapter_type: str,
    adapter_name: str,
    dataset_path: str | Path,
    config: dict[str, Any] | None = None,
    base_model: str | None = None,
) -> str:
    """Queue a job and return its id; bad input raises a clear error and creates no job."""
    job_config = build_config(
        config=config or {},
        adapter_type=adapter_type,
        adapter_name=adapter_name,
        train_dataset=str(dataset_path),
        base_model=base_model,
    )
    return job_manager().submit(job_config).id


def get_job_status(job_id: str) -> dict[str, Any]:
    manager = job_manager()
    job = manager.get(job_id)
    progress = manager.progress(job_id)
    return {
        "job_id": job.id,
        "status": job.status.value,
        "progress": progress.fraction if job.status != "completed" else 1.0,
        "step": progress.step,
        "max_steps": progress.max_steps,
        "metrics": progress.model_dump(exclude_none=True),
        "error": job.error,
        "adapter_path": job.adapter_path,
    }


def cancel_job(job_id: str) -> JobState:
    return job_manager().cancel(job_id)


def list_jobs() -> list[JobState]:
    return job_manager().all_jobs()
