"""Evaluations that belong to a training job: queued when it completes, read back as the adapter's before/after.

When a job with an evaluation dataset completes, the base model and the new adapter are both evaluated on it
(the base run is reused when one on the same base weights, dataset content and size exists). With the job option
"evaluate the base model first", the base run is queued when the job is, so its figure is known while the adapter
trains. The runs carry the job id, so the adapter's lineage reads "base 0.0% -> 95.8% (p < 0.001)" from its own
runs.
"""

from pydantic import BaseModel

from evaluation.runs import RunManager, RunState, RunStatus
from evaluation.significance import format_p, mcnemar_exact
from training.jobs import JobState

# Training's held-out figure scores the first 200 prompts (training.worker.MAX_EVAL_PROMPTS); so do these runs.
JOB_EVAL_LIMIT = 200


def evaluate_base_first(manager: RunManager, job: JobState) -> str | None:
    """For a job queued with `evaluate_base_first`: queue its base model's run (or name the identical one)."""
    config = job.config
    if not config.evaluate_base_first or not config.eval_dataset:
        return None
    run = manager.prepare(config.base_model, config.eval_dataset, limit=JOB_EVAL_LIMIT, job_id=job.id, role="base")
    reusable = _reusable_base(manager, run)
    return reusable.id if reusable is not None else manager.enqueue(run).id


def evaluate_job(manager: RunManager, job: JobState) -> list[str]:
    """Queue the base (unless reusable) and adapter evaluations of a completed job; their run ids."""
    config = job.config
    if not config.eval_dataset or job.adapter_version is None:
        return []
    adapter = f"{config.adapter_name}@v{job.adapter_version}"
    queued: list[str] = []
    # a ConsoleError (a dataset nothing can be scored on) goes to the job's log through the job manager
    adapter_run = manager.submit(adapter, config.eval_dataset, limit=JOB_EVAL_LIMIT, job_id=job.id, role="adapter")
    if _reusable_base(manager, adapter_run) is None:
        base = adapter_run.config.target.base
        queued.append(
            manager.submit(
                base.id, config.eval_dataset, limit=JOB_EVAL_LIMIT, metrics=adapter_run.config.metrics,
                job_id=job.id, role="base",
            ).id
        )  # fmt: skip
    queued.append(adapter_run.id)
    return queued


def _reusable_base(manager: RunManager, run: RunState) -> RunState | None:
    """A completed base-model run on the same weights, dataset content and number of examples."""
    for other in manager.all_runs():
        if (
            other.config.target.kind == "base"
            and other.status in (RunStatus.COMPLETED, RunStatus.QUEUED, RunStatus.RUNNING)
            and other.config.target.base.fingerprint == run.config.target.base.fingerprint
            and other.config.source.get("content_hash") == run.config.source.get("content_hash")
            and other.total == run.total
            and "exact_match" in other.config.metrics
        ):
            return other
    return None


class BeforeAfter(BaseModel):
    """An adapter's exact match against its base model's on the same examples, with McNemar's p."""

    base_run: str
    adapter_run: str
    dataset: str
    base: float
    adapter: float
    p_value: float

    @property
    def text(self) -> str:
        return f"base {self.base:.1%} → {self.adapter:.1%} ({format_p(self.p_value)})"


def before_after(manager: RunManager, adapter: str, version: int) -> BeforeAfter | None:
    """The newest completed run of this adapter version that has a matching completed base run."""
    for run in manager.all_runs():
        target = run.config.target
        if (
            target.kind != "adapter"
            or (target.ref, target.version) != (adapter, version)
            or run.status != RunStatus.COMPLETED
            or "exact_match" not in run.metrics
        ):
            continue
        base = _reusable_base(manager, run)
        if base is None or base.status != RunStatus.COMPLETED:
            continue
        rows, base_rows = manager.rows(run.id), manager.rows(base.id)
        if [r["index"] for r in rows] != [r["index"] for r in base_rows]:
            continue
        test = mcnemar_exact([bool(r["exact_match"]) for r in base_rows], [bool(r["exact_match"]) for r in rows])
        return BeforeAfter(
            base_run=base.id,
            adapter_run=run.id,
            dataset=str(run.config.source.get("name")),
            base=base.metrics["exact_match"],
            adapter=run.metrics["exact_match"],
            p_value=test.p_value,
        )
    return None
