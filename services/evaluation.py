"""Evaluation API: run a target on a dataset in the background, read the results, compare runs, export them.

`target` is None (the embedded base model), a base model name or folder, an adapter ("amazon_v1" or
"amazon_v1@v2") or a saved federation id; with `endpoint` (a saved serving endpoint's name or a server URL), the
model id an OpenAI-compatible server answers with, its API key read from the environment variable `api_key_env`
(or the one the saved endpoint names), never stored. Bad input (unknown target, metric or dataset, a metric the dataset
cannot support, an empty dataset) raises a ConsoleError and queues nothing. Running and cancelling need the
practitioner role (like training jobs: a run occupies the machine and writes to the registry); reading does not.
"""

from collections.abc import Sequence
from typing import Any

from evaluation.compare import CompareError, Comparison, PairTest, compare_runs
from evaluation.lineage import BeforeAfter, before_after
from evaluation.report import html_report, markdown_report, rows_csv, rows_jsonl
from evaluation.runner import GENERATION_METRICS, METRICS, MetricError
from evaluation.runs import DEFAULT_MAX_NEW_TOKENS, FINISHED, RunConfig, RunError, RunState, RunStatus
from evaluation.significance import format_p
from evaluation.targets import TargetError
from registry.access import Role, requires
from services.runtime import evaluation_manager

REMOTE_METRICS = GENERATION_METRICS  # what a model on an OpenAI-compatible endpoint can be scored on

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "FINISHED",
    "METRICS",
    "CompareError",
    "Comparison",
    "MetricError",
    "PairTest",
    "REMOTE_METRICS",
    "RunConfig",
    "RunError",
    "RunState",
    "RunStatus",
    "TargetError",
    "BeforeAfter",
    "adapter_before_after",
    "cancel_evaluation",
    "compare_evaluations",
    "evaluation_rows",
    "export_evaluation",
    "export_rows",
    "format_p",
    "get_evaluation",
    "list_evaluations",
    "run_evaluation",
    "wait_for_evaluation",
]


@requires(Role.PRACTITIONER, "evaluations.run")
def run_evaluation(
    target: str | None,
    dataset: str,
    *,
    metrics: Sequence[str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    endpoint: str | None = None,
    api_key_env: str | None = None,
) -> str:
    """Queue an evaluation and return its run id (eval_YYYYMMDD_HHMMSS_xxxxxx)."""
    return (
        evaluation_manager()
        .submit(
            target,
            dataset,
            metrics=metrics,
            limit=limit,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            endpoint=endpoint,
            api_key_env=api_key_env,
        )
        .id
    )


def get_evaluation(run_id: str) -> dict[str, Any]:
    """Status, progress, metrics, cost and the per-example rows of one run."""
    manager = evaluation_manager()
    run = manager.get(run_id)
    return {
        "run_id": run.id,
        "status": run.status.value,
        "progress": run.fraction,
        "done": run.done,
        "total": run.total,
        "target": run.config.target.key,
        "target_label": run.config.target.label,
        "dataset": run.config.source.get("name", run.config.dataset),
        "metrics": run.metrics,
        "cost_usd": run.cost,
        "seconds": run.seconds,
        "skipped": run.skipped,
        "error": run.error,
        "rows": manager.rows(run_id),
    }


def evaluation_state(run_id: str) -> RunState:
    return evaluation_manager().get(run_id)


def evaluation_rows(run_id: str) -> list[dict[str, Any]]:
    return evaluation_manager().rows(run_id)


def list_evaluations() -> list[RunState]:
    """Every run, newest first."""
    return evaluation_manager().all_runs()


@requires(Role.PRACTITIONER, "evaluations.cancel")
def cancel_evaluation(run_id: str) -> RunState:
    return evaluation_manager().cancel(run_id)


def wait_for_evaluation(run_id: str, timeout: float | None = None) -> RunState:
    """Block until the run finishes (scripts and tests; pages poll)."""
    return evaluation_manager().wait(run_id, timeout)


def compare_evaluations(run_ids: Sequence[str]) -> Comparison:
    """A metrics table, the paired significance of each run against the first, and the examples that changed."""
    manager = evaluation_manager()
    ids = list(dict.fromkeys(run_ids))
    return compare_runs([manager.get(i) for i in ids], [manager.rows(i) for i in ids])


def export_evaluation(run_ids: Sequence[str], fmt: str = "markdown") -> str:
    """A report of one or more runs ("markdown" or "html", self-contained); with two or more, their comparison."""
    manager = evaluation_manager()
    runs = [manager.get(i) for i in dict.fromkeys(run_ids)]
    comparison = compare_evaluations(run_ids) if len(runs) > 1 else None
    if fmt == "markdown":
        return markdown_report(runs, comparison)
    if fmt == "html":
        return html_report(runs, comparison)
    raise CompareError(f"Unknown report format {fmt!r}: choose markdown or html.")


def export_rows(run_id: str, fmt: str = "csv") -> str:
    """The per-example rows as CSV or JSONL."""
    rows = evaluation_manager().rows(run_id)
    if fmt == "csv":
        return rows_csv(rows)
    if fmt == "jsonl":
        return rows_jsonl(rows)
    raise CompareError(f"Unknown rows format {fmt!r}: choose csv or jsonl.")


def adapter_before_after(adapter: str, version: int) -> BeforeAfter | None:
    """The adapter's exact match against its base model on the same examples, e.g. "base 0.0% → 95.8% (p < 0.001)";
    None until both runs completed (a job with an evaluation dataset queues them when it completes)."""
    return before_after(evaluation_manager(), adapter, version)
