"""Evaluation runs: submitted, queued, run on one worker thread, stored one folder per run, restart-safe.

Like the training job manager: every decision is written to disk first. A run resolves its target and dataset
and checks its metrics at submit (a clear error, no folder). Rows are appended a batch at a time; a run that was
running when its process stopped is queued again when the next manager starts and resumes after its last stored
batch, so a restart loses at most one batch of work. Cancelling stops at the end of the current batch.
"""

import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel, Field

from evaluation.cost import run_cost
from evaluation.data import EvalSet, load_examples
from evaluation.run_folder import RunFolder
from evaluation.runner import plan_metrics, score_batch, summarize
from evaluation.targets import TargetSpec, resolve_endpoint_target, resolve_target
from federation.engine import GenerationSettings, InferenceEngine, default_engine
from registry.errors import ConsoleError, NotFound
from registry.layout import Registry
from registry.storage import atomic_write_json, bump_generation, generation, locked, read_json

DEFAULT_MAX_NEW_TOKENS = 160  # campaign plans (working line included) run to ~130 tokens; greedy answers stop at EOS


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED}


class RunError(ConsoleError):
    """An action that does not fit the run's state (cancel a finished run)."""


class RunConfig(BaseModel):
    """What was asked: written once, never changed."""

    target: TargetSpec
    dataset: str
    source: dict[str, Any] = Field(description="The dataset's lineage: name, version, content hash, rows.")
    metrics: list[str]
    limit: int | None = Field(
        default=None,
        ge=1,
        description="Score N examples spread evenly over the dataset (the same ones on every run); empty for all.",
    )
    batch_size: int = Field(
        default=8, ge=1, le=256, description="Prompts per generate call (for an endpoint: requests sent at once)."
    )
    max_new_tokens: int = Field(
        default=DEFAULT_MAX_NEW_TOKENS,
        ge=1,
        le=2048,
        description="Longest answer, in tokens; greedy answers stop at end-of-sequence.",
    )
    job_id: str | None = Field(default=None, description="The training job this run belongs to, if any.")
    role: str | None = Field(default=None, description="'base' or 'adapter' for a training job's runs.")


class RunState(BaseModel):
    id: str
    config: RunConfig
    status: RunStatus = RunStatus.QUEUED
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    total: int = 0
    done: int = 0
    skipped: list[int] = Field(default_factory=list)
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    cost: float | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def label(self) -> str:
        return f"{self.config.target.label} on {self.config.source.get('name', self.config.dataset)}"


def new_run_id() -> str:
    return f"eval_{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"


class RunManager:
    """One worker thread per registry runs queued evaluations in order (they share the machine with training)."""

    def __init__(self, registry: Registry, engine: InferenceEngine | None = None):
        self.registry = registry
        self._engine = engine
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._stops: dict[str, threading.Event] = {}
        self._list_cache: tuple[tuple[int, str], list[RunState]] | None = None
        self._recover()
        threading.Thread(target=self._dispatch, name="evaluation-worker", daemon=True).start()

    @property
    def engine(self) -> InferenceEngine:
        return self._engine or default_engine()

    # ---- actions -------------------------------------------------------------------------------
    def submit(
        self,
        target: str | None,
        dataset: str,
        *,
        metrics: Sequence[str] | None = None,
        limit: int | None = None,
        batch_size: int = 8,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        job_id: str | None = None,
        role: str | None = None,
        endpoint: str | None = None,
        api_key_env: str | None = None,
    ) -> RunState:
        """Resolve and check everything first (ConsoleError, nothing written), then queue."""
        return self.enqueue(
            self.prepare(
                target,
                dataset,
                metrics=metrics,
                limit=limit,
                batch_size=batch_size,
                max_new_tokens=max_new_tokens,
                job_id=job_id,
                role=role,
                endpoint=endpoint,
                api_key_env=api_key_env,
            )
        )

    def prepare(
        self,
        target: str | None,
        dataset: str,
        *,
        metrics: Sequence[str] | None = None,
        limit: int | None = None,
        batch_size: int = 8,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        job_id: str | None = None,
        role: str | None = None,
        endpoint: str | None = None,
        api_key_env: str | None = None,
    ) -> RunState:
        """A checked run, not yet written or queued (ConsoleError on bad input), for `enqueue`. With `endpoint`
        (a saved serving endpoint or a server URL), `target` is the model id that server answers with."""
        if limit is not None and limit < 1:
            raise ConsoleError(f"limit must be at least 1 example (got {limit}); leave it empty for all.")
        spec = resolve_target(target) if endpoint is None else resolve_endpoint_target(endpoint, target, api_key_env)
        evalset = load_examples(dataset, limit)
        config = RunConfig(
            target=spec,
            dataset=dataset,
            source=evalset.source,
            metrics=plan_metrics(metrics, evalset, remote=spec.kind == "endpoint"),
            limit=limit,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            job_id=job_id,
            role=role,
        )
        return RunState(
            id=new_run_id(),
            config=config,
            created=datetime.now(UTC),
            total=len(evalset.examples),
            skipped=evalset.skipped,
        )

    def enqueue(self, run: RunState) -> RunState:
        """Write a prepared run's folder and queue it."""
        self.folder(run.id).path.mkdir(parents=True)
        atomic_write_json(self.folder(run.id).config, run.config.model_dump(mode="json"))
        self._save(run)
        with self._cond:
            self._queue.append(run.id)
            self._cond.notify_all()
        return run

    def cancel(self, run_id: str) -> RunState:
        run = self.get(run_id)
        if run.status in FINISHED:
            raise RunError(f"Evaluation {run_id} is already {run.status.value}; there is nothing to cancel.")
        with self._cond:
            if run_id in self._queue:
                self._queue.remove(run_id)
                return self._transition(run_id, status=RunStatus.CANCELLED, finished=datetime.now(UTC))
            stop = self._stops.get(run_id)
        if stop is None:
            raise RunError(f"Evaluation {run_id} runs in another process of the console; cancel it there.")
        stop.set()
        return run

    def wait(self, run_id: str, timeout: float | None = None) -> RunState:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self.get(run_id).status not in FINISHED:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._cond.wait(timeout=1.0)
        return self.get(run_id)

    # ---- reading -------------------------------------------------------------------------------
    def folder(self, run_id: str) -> RunFolder:
        if not isinstance(run_id, str) or "/" in run_id or ".." in run_id or not run_id.startswith("eval_"):
            raise NotFound(f"No evaluation {run_id!r} (ids look like eval_20261206_120000_ab12cd).")
        return RunFolder(self.registry.evaluations / run_id)

    def get(self, run_id: str) -> RunState:
        path = self.folder(run_id).state
        if not path.is_file():
            raise NotFound(f"No evaluation {run_id!r}.")
        return RunState.model_validate(read_json(path))

    def rows(self, run_id: str) -> list[dict[str, Any]]:
        return self.folder(run_id).rows()

    def all_runs(self) -> list[RunState]:
        """Newest first; an unreadable run folder is skipped (it cannot break the list)."""
        stamp = generation(self.registry.evaluations)
        if self._list_cache and self._list_cache[0] == stamp:
            return self._list_cache[1]
        runs = []
        for folder in self.registry.evaluations.glob("eval_*"):
            try:
                runs.append(RunState.model_validate(read_json(RunFolder(folder).state)))
            except (OSError, ValueError):
                continue
        runs.sort(key=lambda r: r.created, reverse=True)
        self._list_cache = (stamp, runs)
        return runs

    # ---- internals -----------------------------------------------------------------------------
    def _save(self, run: RunState) -> None:
        with locked(self.registry.locks, "evaluations"):
            atomic_write_json(self.folder(run.id).state, run.model_dump(mode="json"))
            bump_generation(self.registry.evaluations)
        with self._cond:
            self._cond.notify_all()

    def _transition(self, run_id: str, **changes: Any) -> RunState:
        run = self.get(run_id).model_copy(update=changes)
        self._save(run)
        return run

    def _lock(self, run_id: str) -> FileLock:
        return FileLock(self.registry.locks / f"eval-{run_id}.lock", thread_local=False)

    def _recover(self) -> None:
        """Queued runs go back in the queue; running ones whose process is gone resume from their rows."""
        for run in sorted(self.all_runs(), key=lambda r: r.created):
            if run.status == RunStatus.QUEUED:
                self._queue.append(run.id)
            elif run.status == RunStatus.RUNNING:
                lock = self._lock(run.id)
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                lock.release()
                self._transition(run.id, status=RunStatus.QUEUED)
                self._queue.append(run.id)

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                run_id = self._queue.popleft()
                self._stops[run_id] = threading.Event()
            try:
                self._work(run_id)
            finally:
                with self._cond:
                    self._stops.pop(run_id, None)
                    self._cond.notify_all()

    def _work(self, run_id: str) -> None:
        lock = self._lock(run_id)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return
        try:
            run = self.get(run_id)
            if run.status != RunStatus.QUEUED:
                return
            run = self._transition(
                run_id, status=RunStatus.RUNNING, started=run.started or datetime.now(UTC), attempts=run.attempts + 1
            )
            self._run(run, self._stops[run_id])
        except ConsoleError as error:
            self._transition(run_id, status=RunStatus.FAILED, finished=datetime.now(UTC), error=str(error))
        except Exception as error:  # noqa: BLE001 — a worker records any failure, never dies silently
            traceback.print_exc()
            self._transition(
                run_id,
                status=RunStatus.FAILED,
                finished=datetime.now(UTC),
                error=f"Evaluation failed ({type(error).__name__}): {error}",
            )
        finally:
            lock.release()

    def _run(self, run: RunState, stop: threading.Event) -> None:
        config, folder = run.config, self.folder(run.id)
        evalset: EvalSet = load_examples(config.dataset, config.limit)
        if evalset.source.get("content_hash") != config.source.get("content_hash"):
            raise ConsoleError(
                f"The dataset {config.dataset!r} changed since this evaluation was queued; run a new evaluation."
            )
        done = min(len(folder.rows()), len(evalset.examples))
        folder.truncate_rows(done)
        settings = GenerationSettings(max_new_tokens=config.max_new_tokens)
        seconds = run.seconds
        for start in range(done, len(evalset.examples), config.batch_size):
            if stop.is_set():
                self._transition(run.id, status=RunStatus.CANCELLED, finished=datetime.now(UTC))
                return
            began = time.perf_counter()
            batch = evalset.examples[start : start + config.batch_size]
            folder.append_rows(score_batch(config.target, batch, config.metrics, settings, self.engine))
            seconds += time.perf_counter() - began
            self._transition(run.id, done=start + len(batch), seconds=round(seconds, 3))
        metrics = summarize(folder.rows(), config.metrics, seconds)
        folder.write_metrics(metrics)
        self._transition(
            run.id,
            status=RunStatus.COMPLETED,
            finished=datetime.now(UTC),
            metrics=metrics,
            # this machine's price per hour says nothing of what another server's time costs
            cost=None if config.target.kind == "endpoint" else run_cost(seconds, self.registry.settings),
        )
