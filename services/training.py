"""Training API: submit, watch and cancel jobs; the adapters they produce; the base models."""

import math
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

from registry.access import Role, requires
from registry.shapes import OBJECTIVE_KINDS, DatasetKind, Objective
from services.runtime import job_manager, training_stack_ready, warm_training_stack
from services.settings import new_job_values
from training import adapters as _adapters
from training.adapters import (
    AdapterRecord,
    adapter_archive,
    adapter_versions,
    get_adapter,
    list_adapters,
)
from training.base_models import BaseModelInfo, list_base_models
from training.config import PRESETS, Experiment, JobConfig, applies_to, build_config, field_errors, field_help
from training.jobs import FINISHED, RESUMABLE, JobManager, JobProgress, JobState, JobStatus

OBJECTIVES: tuple[str, ...] = get_args(Objective)

__all__ = [
    "FINISHED",
    "OBJECTIVES",
    "PRESETS",
    "RESUMABLE",
    "AdapterRecord",
    "BaseModelInfo",
    "Experiment",
    "JobConfig",
    "applies_to",
    "JobManager",
    "JobPlan",
    "JobProgress",
    "JobState",
    "JobStatus",
    "adapter_archive",
    "adapter_versions",
    "build_config",
    "cancel_job",
    "check_job",
    "delete_adapter",
    "field_errors",
    "field_help",
    "fits_objective",
    "get_adapter",
    "get_job_status",
    "job_manager",
    "list_adapters",
    "list_base_models",
    "list_jobs",
    "plan_job",
    "submit_config",
    "submit_training_job",
    "training_stack_ready",
    "warm_training_stack",
]


class JobPlan(BaseModel):
    """What a job will do, shown before it is queued: its steps and, where an earlier job on the same base model and
    dataset completed, how long it will take at that job's pace."""

    steps: int
    examples: int
    seconds: float | None = None
    paced_by: str | None = None  # the adapter name of the earlier job the time comes from


def plan_job(config: JobConfig, rows: int) -> JobPlan:
    """The steps `config` plans over a dataset of `rows` records (the trainer rounds each epoch up to whole steps,
    so about), and its time at the pace of the newest completed first-attempt job with the same base model and
    dataset: seconds per example, so another batch size, epoch count or step limit still scales. Examples of another
    dataset differ in length, so no other job times it."""
    examples = config.planned_examples(rows)
    plan = JobPlan(steps=math.ceil(examples / config.effective_batch_size), examples=examples)
    manager = job_manager()
    for job in manager.all_jobs():
        same = job.config.base_model == config.base_model and job.config.train_dataset == config.train_dataset
        if not same or job.status != JobStatus.COMPLETED or job.attempts != 1:
            continue  # a resumed job's clock restarts with its last attempt while its step count does not
        progress = manager.progress(job.id)
        if progress.step and progress.elapsed:
            per_example = progress.elapsed / (progress.step * job.config.effective_batch_size)
            return plan.model_copy(update={"seconds": per_example * examples, "paced_by": job.config.adapter_name})
    return plan


delete_adapter = requires(Role.PRACTITIONER, "adapters.delete")(_adapters.delete_adapter)


def submit_training_job(
    adapter_type: str,
    adapter_name: str,
    dataset_path: str | Path,
    config: dict[str, Any] | None = None,
    base_model: str | None = None,
    preset: str | None = None,
) -> str:
    """Queue a job and return its id; bad input raises a clear error and creates no job.

    The job starts where the pages start one (Settings' saved training defaults, `new_job_values`); `preset` names
    one of PRESETS, applied over them; `config` values override both."""
    chosen = {"base_model": base_model} if base_model is not None else {}
    job_config = build_config(
        config={**new_job_values(preset), **(config or {})},
        adapter_type=adapter_type,
        adapter_name=adapter_name,
        train_dataset=str(dataset_path),
        **chosen,
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


def fits_objective(kind: DatasetKind | str, objective: str, *, role: str = "training") -> bool:
    """Whether a dataset of `kind` can be the training (or, with role="eval", held-out) data of `objective`.

    Evaluation datasets (prompt, reference) are held-out data only.
    """
    kind = DatasetKind(kind)
    if role == "training" and kind == DatasetKind.EVALUATION:
        return False
    return kind in OBJECTIVE_KINDS[objective]


def check_job(values: dict[str, Any]) -> JobConfig:
    """The checks a submission runs (JobConfig, then the base model, datasets and hardware), without queuing.

    The Train Model wizard enables Launch only when this passes; ConsoleError says what to change.
    """
    from training.worker import preflight

    config = build_config(**values)
    preflight(config)
    return config


def submit_config(config: JobConfig) -> str:
    """Queue a validated config (from `check_job` or `build_config`) and return the job id."""
    return job_manager().submit(config).id
