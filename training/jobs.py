"""The job manager: a queue with a concurrency limit, worker threads, and job state on disk.

Each job is a folder `jobs/<id>/` (its files are `training.job_folder`'s). Live progress is read from
the metrics file, so any process can show it and a restart loses nothing. A running worker holds
`.locks/job-<id>.lock`; a job whose state says running but whose lock is free lost its process and
becomes interrupted, resumable from its last checkpoint. A job's status is written last: its log line and
activity event are on disk first, so any reader (another process, an API client) that sees a job finished also
sees why; `wait` also waits for the follow-ups (`on_completed`) that run after it.

Besides training, the manager runs other long tasks (publishing a package) through the same queue, limit,
state, log, progress and cancel: a task is a kind, a label and JSON parameters, run by a function that the
process registers by kind when it creates the manager (the layers above own those functions).
"""

import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel, Field, model_validator

from registry.access import Role, requires
from registry.activity import log_event
from registry.errors import ConsoleError, CorruptFile, NotFound
from registry.layout import Registry
from registry.storage import atomic_write_json, bump_generation, list_stamp, load_each, locked, parse_checked, read_json
from training.config import JobConfig
from training.errors import JobError
from training.job_folder import JobFolder


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


FINISHED = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}
RESUMABLE = {JobStatus.INTERRUPTED, JobStatus.CANCELLED, JobStatus.FAILED}
# The activity feed's name for entering each status ("job.started" reads better than "job.running").
EVENT_NAMES = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "started",
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
    JobStatus.INTERRUPTED: "interrupted",
}


TRAIN = "train"


class TaskSpec(BaseModel):
    """A job that is not a training run: which registered runner (`kind`), on what, with which parameters."""

    kind: str = Field(min_length=1, max_length=32)
    label: str = Field(min_length=1, max_length=200, description="What the job is about, for lists and the feed.")
    params: dict[str, Any] = Field(default_factory=dict)


class JobState(BaseModel):
    """What `state.json` holds: the config (training) or task, where the job is in its life, and what it produced."""

    id: str
    config: JobConfig | None = None
    task: TaskSpec | None = None
    status: JobStatus = JobStatus.QUEUED
    created: datetime
    started: datetime | None = None
    finished: datetime | None = None
    error: str | None = None
    resume: bool = False
    attempts: int = 0
    restarted_from: str | None = None
    adapter_path: str | None = None
    adapter_version: int | None = None
    final_metrics: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict, description="What a task returned (a package's name).")

    @model_validator(mode="after")
    def _one_kind(self) -> "JobState":
        if (self.config is None) == (self.task is None):
            raise ValueError("a job has either a training config or a task, not both and not neither")
        return self

    @property
    def kind(self) -> str:
        return self.task.kind if self.task else TRAIN

    @property
    def label(self) -> str:
        return self.task.label if self.task else self.config.adapter_name


# An eval line follows the training line of its step, and the final evaluation adds one more.
PROGRESS_TAIL = 4


class JobProgress(BaseModel):
    """The newest metrics of a job: what the progress bar and the cards show."""

    step: int = 0
    max_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    flops_per_second: float | None = None
    efficiency: float | None = None  # flops_per_second over the matmul peak measured when the job started
    elapsed: float | None = None
    eta_seconds: float | None = None
    stage: str | None = None  # what a task is doing now ("merging the adapter into the base weights")

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0


class TaskCancelled(ConsoleError):
    """Raised by a task's `checkpoint()` when a cancel was asked; the job ends cancelled."""


@dataclass(frozen=True)
class TaskContext:
    """What a task runner gets: its job's id, the cancel flag, and the job's log and progress."""

    job_id: str
    registry: Registry
    folder: JobFolder
    stop: threading.Event
    started: float

    def log(self, message: str) -> None:
        self.folder.log(message)

    def progress(self, step: int, total: int, stage: str) -> None:
        """One progress line (the bar and the stage the pages show) and one log line; stops here if cancelled."""
        self.checkpoint()
        self.folder.append_metrics(
            {"step": step, "max_steps": total, "stage": stage, "elapsed": round(time.monotonic() - self.started, 2)}
        )
        self.log(f"step {step} of {total}: {stage}")

    def checkpoint(self) -> None:
        if self.stop.is_set():
            raise TaskCancelled("Cancelled before it finished; nothing was kept.")


TaskRunner = Callable[[TaskContext, dict[str, Any]], dict[str, Any]]


def new_job_id() -> str:
    return f"job_{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"


class JobManager:
    """Owns the worker threads of one process; every decision it takes is also written to disk."""

    def __init__(self, registry: Registry, concurrency: int | None = None, tasks: dict[str, TaskRunner] | None = None):
        self.registry = registry
        self.concurrency = concurrency or registry.settings.max_concurrent_jobs
        # Runners of the non-training kinds, given before recovery so a queued task found on disk can run.
        self.tasks: dict[str, TaskRunner] = dict(tasks or {})
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._list_cache: tuple[tuple[Any, ...], tuple[list[JobState], list[CorruptFile]]] | None = None
        # Run in the worker thread after a job completes (services queues its evaluations here); a failing
        # callback is logged in the job's log and never fails the job.
        self.on_completed: list[Callable[[JobState], object]] = []
        # Run in the submitting thread once a job is queued (services queues a base-model evaluation here for
        # "evaluate the base model first"); a failing callback is logged in the job's log, the job stays queued.
        self.on_submitted: list[Callable[[JobState], object]] = []
        self._recover()
        threading.Thread(target=self._dispatch, name="job-dispatcher", daemon=True).start()

    # ---- actions -------------------------------------------------------------------------------
    @requires(Role.PRACTITIONER, "jobs.submit")
    def submit(self, config: JobConfig, *, restarted_from: str | None = None) -> JobState:
        """Check the model, data and hardware first (ConsoleError, no job created), then queue."""
        from training.worker import preflight

        self._check_backend(config)
        preflight(config)
        job = JobState(id=new_job_id(), config=config, created=datetime.now(UTC), restarted_from=restarted_from)
        self.job_dir(job.id).mkdir(parents=True)
        self._save(job)
        self._log(job.id, f"queued: {config.adapter_name} ({config.objective}, {config.quantization})")
        with self._cond:
            self._queue.append(job.id)
            self._cond.notify_all()
        for callback in self.on_submitted:
            try:
                callback(job)
            except Exception as error:  # noqa: BLE001 — the job is queued; a side task must not undo that
                self._log(job.id, f"after queueing: {type(error).__name__}: {error}")
        return job

    def submit_task(self, task: TaskSpec, *, restarted_from: str | None = None) -> JobState:
        """Queue a task of a registered kind (its caller checks its parameters first and owns the role check)."""
        if task.kind not in self.tasks:
            raise JobError(f"No runner for jobs of kind {task.kind!r} in this process.")
        job = JobState(id=new_job_id(), task=task, created=datetime.now(UTC), restarted_from=restarted_from)
        self.job_dir(job.id).mkdir(parents=True)
        self._save(job)
        self._log(job.id, f"queued: {task.kind} {task.label}")
        with self._cond:
            self._queue.append(job.id)
            self._cond.notify_all()
        return job

    def set_concurrency(self, concurrency: int) -> None:
        """A new limit (Settings page), applied now: more queued jobs start; running ones are never stopped."""
        with self._cond:
            self.concurrency = concurrency
            self._cond.notify_all()

    def submit_many(self, configs: list[JobConfig]) -> list[JobState]:
        """Batch submit: every config passes preflight before any is queued, so a bad one queues nothing."""
        from training.worker import preflight

        for config in configs:
            self._check_backend(config)
            preflight(config)
        return [self.submit(config) for config in configs]

    @requires(Role.PRACTITIONER, "jobs.cancel")
    def cancel(self, job_id: str) -> JobState:
        job = self.get(job_id)
        if job.status in FINISHED:
            raise JobError(f"Job {job_id} is already {job.status.value}; there is nothing to cancel.")
        with self._cond:
            if job_id in self._queue:
                self._queue.remove(job_id)
                self._log(job_id, "cancelled while queued")
                return self._transition(job_id, status=JobStatus.CANCELLED, finished=datetime.now(UTC))
            stop = self._stops.get(job_id)
        if stop is None:
            raise JobError(f"Job {job_id} runs in another process of the console; cancel it there.")
        stop.set()
        self._log(job_id, "cancel requested; stopping at the end of the current step")
        return job

    @requires(Role.PRACTITIONER, "jobs.restart")
    def restart(self, job_id: str) -> JobState:
        """A new job with the same config or task (the original stays in history)."""
        job = self.get(job_id)
        if job.task:
            return self.submit_task(job.task, restarted_from=job_id)
        return self.submit(job.config, restarted_from=job_id)

    @requires(Role.PRACTITIONER, "jobs.resume")
    def resume(self, job_id: str) -> JobState:
        job = self.get(job_id)
        if job.status not in RESUMABLE:
            raise JobError(f"Job {job_id} is {job.status.value}; only interrupted, cancelled or failed jobs resume.")
        if not self.latest_checkpoint(job_id):
            raise JobError(f"Job {job_id} saved no checkpoint yet; restart it instead.")
        job = self._transition(job_id, status=JobStatus.QUEUED, resume=True, error=None, finished=None)
        self._log(job_id, f"queued to resume from {self.latest_checkpoint(job_id).name}")
        with self._cond:
            self._queue.append(job_id)
            self._cond.notify_all()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> JobState:
        """Block until the job finishes and, when it ran in this process, until its worker is done with it: the
        status is on disk before the worker writes the job's log line, activity event and follow-ups, so a status
        poll alone returns early (for scripts and tests; pages poll instead)."""
        deadline = None if timeout is None else datetime.now(UTC).timestamp() + timeout
        with self._cond:
            while self.get(job_id).status not in FINISHED or job_id in self._threads:
                remaining = None if deadline is None else deadline - datetime.now(UTC).timestamp()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(timeout=min(1.0, remaining) if remaining else 1.0)
        return self.get(job_id)

    # ---- reading -------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobState:
        path = self.folder(job_id).state
        if not path.is_file():
            raise NotFound(f"No training job {job_id!r}.")
        return _read_state(path)

    def all_jobs(self, kind: str | None = TRAIN) -> list[JobState]:
        """Newest first, of one kind (training by default; None for every kind), cached until any job changes
        state (in any process); unreadable states are skipped."""
        return [job for job in self._scan()[0] if kind is None or job.kind == kind]

    def broken_jobs(self) -> list[CorruptFile]:
        """Job folders whose state.json cannot be read, for the page to name."""
        return self._scan()[1]

    def _scan(self) -> tuple[list[JobState], list[CorruptFile]]:
        states = [JobFolder(folder).state for folder in self.registry.jobs.iterdir() if folder.is_dir()]
        stamp = list_stamp(self.registry.jobs, states)
        if self._list_cache and self._list_cache[0] == stamp:
            return self._list_cache[1]
        jobs, broken = load_each(states, lambda path: _read_state(path) if path.is_file() else None)
        jobs.sort(key=lambda j: j.created, reverse=True)
        self._list_cache = (stamp, (jobs, broken))
        return jobs, broken

    def progress(self, job_id: str) -> JobProgress:
        """The newest line, with loss and learning rate from the last training line: eval lines carry neither."""
        merged: dict[str, Any] = {}
        for line in self.metrics(job_id, tail=PROGRESS_TAIL):
            merged.update(line)
        return JobProgress.model_validate(merged)

    def metrics(self, job_id: str, tail: int | None = None) -> list[dict[str, Any]]:
        return self.folder(job_id).metrics(tail)

    def log_text(self, job_id: str) -> str:
        return self.folder(job_id).log_text()

    def latest_checkpoint(self, job_id: str) -> Path | None:
        return self.folder(job_id).latest_checkpoint()

    def job_dir(self, job_id: str) -> Path:
        return self.folder(job_id).path

    def folder(self, job_id: str) -> JobFolder:
        if "/" in job_id or ".." in job_id or not job_id.startswith("job_"):
            raise NotFound(f"No training job {job_id!r}.")
        return JobFolder(self.registry.jobs / job_id)

    # ---- internals -----------------------------------------------------------------------------

    def _save(self, job: JobState, previous: JobStatus | None = None) -> None:
        """Write the state; a changed status goes to the activity feed first, so a reader (another process, an API
        client) that sees the status also sees its event."""
        if job.status != previous:
            subject = {"task": job.task.kind} if job.task else {"adapter": job.config.adapter_name}
            log_event(f"job.{EVENT_NAMES[job.status]}", _event_message(job), self.registry, job=job.id, **subject)
        with locked(self.registry.locks, "jobs"):
            atomic_write_json(self.folder(job.id).state, job.model_dump(mode="json"))
            bump_generation(self.registry.jobs)
        with self._cond:
            self._cond.notify_all()

    def _transition(self, job_id: str, **changes: Any) -> JobState:
        before = self.get(job_id)
        job = before.model_copy(update=changes)
        self._save(job, previous=before.status)
        return job

    def _log(self, job_id: str, message: str) -> None:
        self.folder(job_id).log(message)

    def _job_lock(self, job_id: str) -> FileLock:
        return FileLock(self.registry.locks / f"job-{job_id}.lock", thread_local=False)

    def _recover(self) -> None:
        """Jobs left running by a dead process become interrupted; queued ones go back in the queue."""
        for job in sorted(self.all_jobs(kind=None), key=lambda j: j.created):
            if job.status == JobStatus.QUEUED:
                self._queue.append(job.id)
            elif job.status == JobStatus.RUNNING:
                lock = self._job_lock(job.id)
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                lock.release()
                again = "start it again" if job.task else "resume it from its checkpoint"
                self._log(job.id, f"interrupted: the process running this job stopped; {again}")
                self._transition(job.id, status=JobStatus.INTERRUPTED, finished=datetime.now(UTC))

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._queue or len(self._threads) >= self.concurrency:
                    self._cond.wait()
                job_id = self._queue.popleft()
                self._stops[job_id] = threading.Event()
                thread = threading.Thread(target=self._work, args=(job_id,), name=f"train-{job_id}", daemon=True)
                self._threads[job_id] = thread
            thread.start()

    def _work(self, job_id: str) -> None:
        lock = self._job_lock(job_id)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self._forget(job_id)
            return
        try:
            if self.get(job_id).status != JobStatus.QUEUED:
                return
            job = self._transition(
                job_id, status=JobStatus.RUNNING, started=datetime.now(UTC), attempts=self.get(job_id).attempts + 1
            )
            self._log(job_id, "running" + (" (resuming from checkpoint)" if job.resume else ""))
            self._run_task(job) if job.task else self._run(job)
        except TaskCancelled:
            self._log(job_id, "cancelled: nothing was kept")
            self._transition(job_id, status=JobStatus.CANCELLED, finished=datetime.now(UTC))
        except ConsoleError as error:
            self._fail(job_id, str(error))
        except Exception as error:  # noqa: BLE001 — a worker must record any failure, never die silently
            self._log(job_id, traceback.format_exc())
            what = "Training" if self.get(job_id).task is None else self.get(job_id).task.kind.capitalize()
            self._fail(job_id, f"{what} failed ({type(error).__name__}): {error}")
        finally:
            lock.release()
            self._forget(job_id)

    @property
    def backend(self) -> str:
        """'local', or the address of the Ray cluster jobs train on (setting RMN_LORA_TRAINING_BACKEND)."""
        return self.registry.settings.training_backend

    def _check_backend(self, config: JobConfig) -> None:
        from training.ray_backend import worker_config

        if self.backend == "local":
            if config.workers > 1 or config.gpus_per_worker:
                raise JobError(
                    f"{config.workers} workers / {config.gpus_per_worker:g} GPUs per worker need the Ray backend "
                    "(RMN_LORA_TRAINING_BACKEND=<Ray address>); the local backend splits a job over this machine's cores "
                    "with data_parallel instead."
                )
        else:
            worker_config(config)

    def _run(self, job: JobState) -> None:
        from training.adapters import register_adapter

        if self.backend == "local":
            from training.data_parallel import run_local

            result = run_local(job.config, self.job_dir(job.id), stop=self._stops[job.id], resume=job.resume)
        else:
            from training.ray_backend import run_on_ray

            result = run_on_ray(
                job.config, self.job_dir(job.id), stop=self._stops[job.id], resume=job.resume, address=self.backend
            )
        if result.status == "cancelled":
            self._log(job.id, f"cancelled at step {result.steps}")
            self._transition(
                job.id, status=JobStatus.CANCELLED, finished=datetime.now(UTC), final_metrics=result.metrics
            )
            return
        adapter = register_adapter(result, job.config, registry=self.registry, job_id=job.id)
        self._log(job.id, f"completed: adapter {job.config.adapter_name} v{adapter.version} saved")
        self._transition(
            job.id,
            status=JobStatus.COMPLETED,
            finished=datetime.now(UTC),
            final_metrics=result.metrics,
            adapter_path=str(adapter.path),
            adapter_version=adapter.version,
        )
        completed = self.get(job.id)
        for callback in self.on_completed:
            try:
                callback(completed)
            except Exception as error:  # noqa: BLE001 — the adapter is saved; a follow-up must not undo that
                self._log(job.id, f"after completion: {type(error).__name__}: {error}")

    def _run_task(self, job: JobState) -> None:
        context = TaskContext(job.id, self.registry, self.folder(job.id), self._stops[job.id], time.monotonic())
        context.folder.reset_metrics()
        result = self.tasks[job.task.kind](context, job.task.params)
        self._log(job.id, f"completed: {job.task.kind} {job.task.label}")
        self._transition(job.id, status=JobStatus.COMPLETED, finished=datetime.now(UTC), result=result)

    def _fail(self, job_id: str, message: str) -> None:
        self._log(job_id, f"failed: {message}")
        self._transition(job_id, status=JobStatus.FAILED, finished=datetime.now(UTC), error=message)

    def _forget(self, job_id: str) -> None:
        with self._cond:
            self._threads.pop(job_id, None)
            self._stops.pop(job_id, None)
            self._cond.notify_all()


def _event_message(job: JobState) -> str:
    if job.task:
        return _task_message(job)
    name = job.config.adapter_name
    match job.status:
        case JobStatus.QUEUED:
            return f"Queued {name} to resume from its last checkpoint" if job.resume else f"Queued training of {name}"
        case JobStatus.RUNNING:
            return f"Started training {name}" + (" (resuming)" if job.resume else "")
        case JobStatus.COMPLETED:
            return f"Completed training: adapter {name} v{job.adapter_version}"
        case JobStatus.FAILED:
            return f"Training of {name} failed: {job.error}"
        case JobStatus.CANCELLED:
            return f"Cancelled training of {name}"
        case JobStatus.INTERRUPTED:
            return f"Training of {name} was interrupted (the server stopped); resume it from its last checkpoint"


def _task_message(job: JobState) -> str:
    what = f"{job.task.kind} of {job.task.label}"
    match job.status:
        case JobStatus.QUEUED:
            return f"Queued {what}"
        case JobStatus.RUNNING:
            return f"Started {what}"
        case JobStatus.COMPLETED:
            return f"Completed {what}"
        case JobStatus.FAILED:
            return f"{what.capitalize()} failed: {job.error}"
        case JobStatus.CANCELLED:
            return f"Cancelled {what}"
        case JobStatus.INTERRUPTED:
            return f"{what.capitalize()} was interrupted (the server stopped); start it again"


def _read_state(path: Path) -> JobState:
    fix = f"Restore it from a backup, or remove the job's folder ('{path.parent}') to drop the job from the list."
    return parse_checked(path, JobState.model_validate, read_json(path, fix), fix)
