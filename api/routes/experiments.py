"""Experiments: training jobs. Submit, list, read progress and metrics, cancel, resume."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.pagination import Page, Paging, page_of, paging
from services import training


class ExperimentRequest(BaseModel):
    """What the Training page's form submits; `config` holds any JobConfig setting (see /experiments/settings)."""

    adapter_name: str
    dataset: str = Field(description="A library dataset name, or a file path on the server.")
    adapter_type: str = "task"
    base_model: str | None = Field(default=None, description="Base model id or folder; the embedded model if left out.")
    preset: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class Experiment(BaseModel):
    job: training.JobState
    progress: training.JobProgress


router = APIRouter(prefix="/experiments", tags=["experiments"])


def _experiment(job_id: str) -> Experiment:
    manager = training.job_manager()
    return Experiment(job=manager.get(job_id), progress=manager.progress(job_id))


@router.get("")
def list_experiments(
    page: Annotated[Paging, Depends(paging)], status: training.JobStatus | None = None
) -> Page[training.JobState]:
    """Newest first."""
    return page_of([j for j in training.list_jobs() if status is None or j.status == status], page)


@router.post("", status_code=201)
def submit_experiment(request: ExperimentRequest) -> Experiment:
    """Check model, data and settings first (nothing is queued on a bad request), then queue the job."""
    job_id = training.submit_training_job(
        request.adapter_type,
        request.adapter_name,
        request.dataset,
        config=request.config,
        base_model=request.base_model,
        preset=request.preset,
    )
    return _experiment(job_id)


@router.get("/{job_id}")
def get_experiment(job_id: str) -> Experiment:
    return _experiment(job_id)


@router.get("/{job_id}/metrics")
def experiment_metrics(job_id: str, page: Annotated[Paging, Depends(paging)]) -> Page[dict[str, Any]]:
    """The job's metrics lines (training and evaluation), oldest first."""
    training.job_manager().get(job_id)
    return page_of(training.job_manager().metrics(job_id), page)


@router.get("/{job_id}/log", response_model=str)
def experiment_log(job_id: str) -> str:
    training.job_manager().get(job_id)
    return training.job_manager().log_text(job_id)


@router.post("/{job_id}/cancel")
def cancel_experiment(job_id: str) -> Experiment:
    """A queued job is cancelled at once; a running one stops at the end of its current step."""
    training.cancel_job(job_id)
    return _experiment(job_id)


@router.post("/{job_id}/resume")
def resume_experiment(job_id: str) -> Experiment:
    """Queue an interrupted, cancelled or failed job again from its latest checkpoint."""
    training.job_manager().resume(job_id)
    return _experiment(job_id)
