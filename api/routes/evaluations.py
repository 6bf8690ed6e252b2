"""Evaluations: run a model (base, adapter version, saved federation, or a model on an OpenAI-compatible endpoint)
on a dataset, read the results, cancel.

A run is queued and runs in the console's evaluation worker (the same one the Evaluations page uses); poll
GET /evaluations/{id} until its status is completed, failed or cancelled.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from api.pagination import Page, Paging, page_of, paging
from services import evaluation


class EvaluationRequest(BaseModel):
    """What the Evaluations page's form submits."""

    target: str | None = Field(
        default=None,
        description="A base model id, an adapter (`name` or `name@v2`) or a saved federation id; "
        "the embedded base model if left out. With `endpoint`: the model id that server answers with.",
    )
    endpoint: str | None = Field(
        default=None,
        description="Evaluate a model on an OpenAI-compatible server: a saved serving endpoint's name or a server "
        "URL (http://gpu-box:8000). Generation metrics only (a server returns no log-likelihoods).",
    )
    api_key_env: str | None = Field(
        default=None,
        description="The environment variable (where the console runs) holding that server's API key; the key "
        "itself is never sent to this API nor stored.",
    )
    dataset: str = Field(description="A library dataset name (its latest version).")
    metrics: list[str] | None = Field(default=None, description="Metric names; the dataset's defaults if left out.")
    limit: Annotated[int | None, Field(ge=1, description="Evaluate N examples spread evenly over the dataset.")] = None
    batch_size: Annotated[int, Field(ge=1, le=256)] = 8
    max_new_tokens: Annotated[int, Field(ge=1, le=2048)] = evaluation.DEFAULT_MAX_NEW_TOKENS


class Evaluation(BaseModel):
    """One run: what was asked, where it is, and its scores once completed."""

    id: str
    label: str
    status: evaluation.RunStatus
    progress: float
    done: int
    total: int
    target: str
    dataset: str
    metrics: dict[str, Any]
    cost_usd: float | None
    seconds: float
    error: str | None
    created: datetime
    finished: datetime | None
    config: dict[str, Any] = Field(description="What was asked: target, dataset lineage, metrics, limits.")


class EvaluationDetail(Evaluation):
    rows: list[dict[str, Any]] = Field(description="Per-example results (prompt, reference, answer, scores).")


router = APIRouter(prefix="/evaluations", tags=["evaluations"])


def _summary(run: evaluation.RunState) -> Evaluation:
    return Evaluation(
        id=run.id,
        label=run.label,
        status=run.status,
        progress=run.fraction,
        done=run.done,
        total=run.total,
        target=run.config.target.key,
        dataset=str(run.config.source.get("name", run.config.dataset)),
        metrics=run.metrics,
        cost_usd=run.cost,
        seconds=run.seconds,
        error=run.error,
        created=run.created,
        finished=run.finished,
        config=run.config.model_dump(mode="json"),
    )


@router.get("")
def list_evaluations(
    page: Annotated[Paging, Depends(paging)],
    status: evaluation.RunStatus | None = None,
    target: str | None = None,
) -> Page[Evaluation]:
    """Newest first; filter by status or by target (its key, e.g. `adapter:mapper@v1`, or any part of it)."""
    runs = [
        r
        for r in evaluation.list_evaluations()
        if (status is None or r.status == status) and (target is None or target in r.config.target.key)
    ]
    return page_of([_summary(r) for r in runs], page)


@router.post("", status_code=201)
def submit_evaluation(request: EvaluationRequest) -> Evaluation:
    """Everything is checked first (target, dataset, metrics): a bad request queues nothing."""
    run_id = evaluation.run_evaluation(
        request.target,
        request.dataset,
        metrics=request.metrics,
        limit=request.limit,
        batch_size=request.batch_size,
        max_new_tokens=request.max_new_tokens,
        endpoint=request.endpoint,
        api_key_env=request.api_key_env,
    )
    return _summary(evaluation.evaluation_state(run_id))


@router.get("/{run_id}")
def get_evaluation(run_id: str) -> EvaluationDetail:
    return EvaluationDetail(
        **_summary(evaluation.evaluation_state(run_id)).model_dump(), rows=evaluation.evaluation_rows(run_id)
    )


@router.post("/{run_id}/cancel")
def cancel_evaluation(run_id: str) -> Evaluation:
    """A queued run is cancelled at once; a running one stops after its current batch (409 once finished)."""
    evaluation.cancel_evaluation(run_id)
    return _summary(evaluation.evaluation_state(run_id))


@router.get("/{run_id}/report", response_class=PlainTextResponse)
def evaluation_report(run_id: str, format: Literal["markdown", "html"] = "markdown") -> PlainTextResponse:
    """The run's report as the Evaluations page exports it (HTML is self-contained)."""
    text = evaluation.export_evaluation([run_id], format)
    return PlainTextResponse(text, media_type="text/html" if format == "html" else "text/markdown")
