"""Models API (seeds 003 / 004): one list of base models, adapters and published packages; register, edit,
delete (refused while something uses the model, naming it) and publish.

Listing reads config headers, lineage and records only: no torch, no weights.
"""

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from federation.publish import (
    DEFAULT_SHARD_SIZE,
    SHARD_SIZES,
    PackageCorrupt,
    PackageRecord,
    PublishError,
    check_manifest,
    delete_package,
    get_package,
    list_packages,
)
from federation.publish import STAGES as PUBLISH_STAGES
from federation.publish import plan as plan_publish
from federation.publish import publish as _publish
from federation.store import list_federations
from registry.access import Role, requires
from registry.activity import log_event
from registry.errors import ConsoleError, NotFound
from registry.sizes import human_size
from services.runtime import PUBLISH, job_manager
from training.adapters import AdapterRecord, adapter_versions, delete_adapter, list_adapters
from training.base_models import BaseModelError, BaseModelInfo, describe_folder, list_base_models
from training.jobs import FINISHED, JobState, JobStatus, TaskContext, TaskSpec
from training.registered_models import (
    annotate,
    annotations,
    forget_annotation,
    get_registered,
    registered_models,
    unregister_base_model,
)
from training.registered_models import register_base_model as _register

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "SHARD_SIZES",
    "ModelEntry",
    "ModelInUse",
    "PackageCorrupt",
    "PackageRecord",
    "PublishError",
    "check_package",
    "delete_model",
    "get_model",
    "get_package",
    "list_models",
    "list_packages",
    "model_evaluations",
    "model_users",
    "publish",
    "publish_job",
    "publish_jobs",
    "register_base_model",
    "submit_publish",
    "update_model",
]

Kind = Literal["base", "adapter", "package"]
KINDS: tuple[Kind, ...] = ("base", "adapter", "package")


class ModelInUse(ConsoleError):
    """A model that jobs, federations or packages still use."""


class ModelEntry(BaseModel):
    """One row of the Models page: what every kind of model has in common, plus its own details."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    name: str
    version: int | None = None
    latest: bool = True
    architecture: str = ""
    parameters: int = 0
    dtype: str = ""
    size_bytes: int = 0
    created: datetime | None = None
    source: str = ""
    base_model: str = ""
    description: str = ""
    tags: list[str] = []
    path: str = ""
    error: str | None = None
    details: dict[str, Any] = {}

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version is not None else self.name


def list_models(kind: Kind | None = None, search: str = "", tags: list[str] | None = None) -> list[ModelEntry]:
    """Base models, every adapter version (latest flagged) and packages; filtered by kind, text and tags."""
    if kind is not None and kind not in KINDS:
        raise ConsoleError(f"Unknown model type {kind!r}; choose one of: {', '.join(KINDS)}.")
    notes = annotations()
    entries: list[ModelEntry] = []
    if kind in (None, "base"):
        entries += _base_entries()
    if kind in (None, "adapter"):
        for latest in list_adapters():
            versions = adapter_versions(latest.name) if latest.version > 1 else [latest]
            entries += [_adapter_entry(r, r.version == latest.version) for r in reversed(versions)]
    if kind in (None, "package"):
        entries += [_package_entry(p) for p in list_packages()]
    entries = [_annotated(e, notes) for e in entries]
    needle = search.strip().casefold()
    if needle:
        entries = [e for e in entries if needle in _haystack(e)]
    if tags:
        wanted = set(tags)
        entries = [e for e in entries if wanted <= set(e.tags)]
    return entries


def get_model(name: str, kind: Kind | None = None, version: int | None = None) -> ModelEntry:
    """One model by name (an adapter's latest version unless `version` is given)."""
    for entry in list_models(kind):
        if entry.name == name and (version is None and entry.latest or entry.version == version):
            return entry
    raise NotFound(f"No {kind or 'model'} named {name!r}{f' v{version}' if version else ''}.")


@requires(Role.PRACTITIONER, "models.register")
def register_base_model(name: str, path: str | Path) -> ModelEntry:
    """Add a local safetensors folder as a base model (refused, with the reason, if unsafe or incomplete)."""
    record = _register(name, path)
    log_event("model.registered", f"Registered base model {record.name} from {record.path}", model=record.name)
    return get_model(record.name, "base")


@requires(Role.PRACTITIONER, "models.update")
def update_model(name: str, kind: Kind, *, description: str | None = None, tags: list[str] | None = None) -> ModelEntry:
    get_model(name, kind)
    annotate(kind, name, description=description, tags=tags)
    log_event("model.updated", f"Edited the description / tags of {kind} {name}", model=name, model_kind=kind)
    return get_model(name, kind)


def model_users(name: str, kind: Kind, version: int | None = None) -> list[str]:
    """What still uses a model, in words: active jobs, saved federations, published packages."""
    users: list[str] = []
    if kind == "base":
        entry = get_model(name, "base")
        fingerprint, path = entry.details.get("fingerprint"), entry.path
        for job in job_manager().all_jobs():
            if job.status not in FINISHED and job.config.base_model in (name, path):
                users.append(f"job {job.id} ({job.status.value})")
        users += [
            f"federation {f.name!r}"
            for f in list_federations()
            if f.base.fingerprint == fingerprint or f.base.path == path
        ]
        users += [f"package {p.name!r}" for p in list_packages() if p.base_model.get("fingerprint") == fingerprint]
    elif kind == "adapter":
        for job in job_manager().all_jobs():
            if job.status not in FINISHED and job.config.adapter_name == name and version is None:
                users.append(f"job {job.id} ({job.status.value}), which will add a version")
        users += [
            f"federation {f.name!r}"
            for f in list_federations()
            if any(m.adapter == name and (version is None or m.version == version) for m in f.members)
        ]
        users += [
            f"package {p.name!r}"
            for p in list_packages()
            if any(a["name"] == name and (version is None or a["version"] == version) for a in p.adapters)
        ]
        users += [
            f"publish job {j.id} ({j.status.value})"
            for j in job_manager().all_jobs(PUBLISH)
            if j.status not in FINISHED
            and j.task.params["source"] == name
            and (version is None or j.task.params["version"] == version)
        ]
    return users


@requires(Role.PRACTITIONER, "models.delete")
def delete_model(name: str, kind: Kind, version: int | None = None) -> None:
    """Delete an adapter (version), a package, or a base model's registration; refused while in use."""
    if kind == "base":
        get_registered(name)  # the embedded model and the models cache are not registrations
    elif kind == "package":
        get_package(name)
    users = model_users(name, kind, version)
    if users:
        raise ModelInUse(
            f"{kind.capitalize()} {name}{f' v{version}' if version else ''} is in use by {', '.join(users)}. "
            "Delete or finish those first."
        )
    if kind == "base":
        unregister_base_model(name)
    elif kind == "adapter":
        delete_adapter(name, version)
    else:
        delete_package(name)
    if kind != "adapter" or version is None:
        forget_annotation(kind, name)
    what = f"{name} v{version}" if version else name
    log_event("model.deleted", f"Deleted {kind} {what}", model=name, model_kind=kind, version=version)


@requires(Role.PRACTITIONER, "models.publish")
def submit_publish(
    adapter_or_federation: str,
    *,
    merge: bool = True,
    name: str | None = None,
    version: int | None = None,
    licence: str = "other",
    intended_use: str = "",
    description: str = "",
    max_shard_size: str = DEFAULT_SHARD_SIZE,
) -> str:
    """Queue a publish of an adapter ('name', 'name@v2') or a saved additive federation ('fed_...') as a job of
    the job manager (progress, cancel, log, state on disk); returns the job id.

    The source and the package name are checked first (a clear error, no job); the weights are merged and
    verified by the job."""
    ref, _, pinned = adapter_or_federation.partition("@")
    if pinned:
        digits = pinned.removeprefix("v")
        if not digits.isdigit():
            raise PublishError(f"{adapter_or_federation!r}: the part after '@' must be a version like v2.")
        version = int(digits)
    manager = job_manager()
    _, records, source_info, name = plan_publish(
        ref, merge=merge, name=name, version=version, max_shard_size=max_shard_size, registry=manager.registry
    )
    if version is None and source_info["type"] == "adapter":
        version = records[0].version  # pin the version now: a job finishing meanwhile must not change what ships
    if any(j.task.params["name"] == name for j in manager.all_jobs(PUBLISH) if j.status not in FINISHED):
        raise PublishError(f"A publish job is already making a package named {name!r}. Choose another name.")
    params = {
        "source": ref,
        "version": version,
        "merge": merge,
        "name": name,
        "licence": licence,
        "intended_use": intended_use,
        "description": description,
        "max_shard_size": max_shard_size,
    }
    label = f"{name} from {source_info['label']}"
    return manager.submit_task(TaskSpec(kind=PUBLISH, label=label, params=params)).id


def publish(
    adapter_or_federation: str,
    *,
    merge: bool = True,
    name: str | None = None,
    version: int | None = None,
    licence: str = "other",
    intended_use: str = "",
    description: str = "",
    max_shard_size: str = DEFAULT_SHARD_SIZE,
) -> PackageRecord:
    """Publish and wait (scripts, the API): the same job as `submit_publish`; raises PublishError if it fails."""
    job_id = submit_publish(
        adapter_or_federation,
        merge=merge,
        name=name,
        version=version,
        licence=licence,
        intended_use=intended_use,
        description=description,
        max_shard_size=max_shard_size,
    )
    job = job_manager().wait(job_id)
    if job.status != JobStatus.COMPLETED:
        raise PublishError(job.error or f"The publish job {job.id} ended {job.status.value}; nothing was published.")
    return get_package(job.result["package"])


def publish_job(job_id: str) -> JobState:
    """A publish job's state (Publish follows it)."""
    job = job_manager().get(job_id)
    if job.kind != PUBLISH:
        raise NotFound(f"{job_id} is not a publish job.")
    return job


def publish_jobs() -> list[JobState]:
    """Every publish job, newest first."""
    return job_manager().all_jobs(PUBLISH)


def run_publish(context: TaskContext, params: dict[str, Any]) -> dict[str, Any]:
    """The job manager's runner of publish jobs: stages go to the job's progress and log; a cancel stops it
    at the next stage (or within a second of the fresh-process check), leaving nothing behind."""
    started = time.perf_counter()
    record = _publish(
        params["source"],
        merge=params["merge"],
        name=params["name"],
        version=params["version"],
        licence=params["licence"],
        intended_use=params["intended_use"],
        description=params["description"],
        max_shard_size=params["max_shard_size"],
        registry=context.registry,
        on_stage=lambda stage: context.progress(PUBLISH_STAGES.index(stage) + 1, len(PUBLISH_STAGES), stage),
        checkpoint=context.checkpoint,
    )
    if params["description"]:
        annotate("package", record.name, description=params["description"])
    verification = record.verification
    context.log(
        f"published {record.name}: {human_size(record.size_bytes)}, max logit difference "
        f"{verification.max_abs_diff:.2g} (tolerance {verification.tolerance:g}), top-1 agreement "
        f"{verification.top1_agreement:.1%}"
    )
    log_event(
        "package.published",
        f"Published {record.name} ({record.kind}, {human_size(record.size_bytes)}) from {record.source['label']} "
        f"in {time.perf_counter() - started:.0f} s; verified, max logit difference "
        f"{verification.max_abs_diff:.2g}",
        package=record.name,
        job=context.job_id,
    )
    return {"package": record.name}


def model_evaluations(entry: ModelEntry) -> list[dict[str, Any]]:
    """The evaluation runs of a base model or adapter version (Evaluations' records), newest first, with the
    adapter's before / after figure against its base model when both runs exist."""
    from services.evaluation import adapter_before_after, list_evaluations

    if entry.kind == "package":
        return []
    found = []
    for run in list_evaluations():
        target = run.config.target
        same = (
            target.kind == "adapter" and target.ref == entry.name and target.version == entry.version
            if entry.kind == "adapter"
            else target.kind == "base" and target.base.fingerprint == entry.details.get("fingerprint")
        )
        if same:
            found.append(
                {
                    "run": run.id,
                    "dataset": run.config.source.get("name", run.config.dataset),
                    "status": run.status.value,
                    "created": run.created,
                    **{k: v for k, v in run.metrics.items() if isinstance(v, int | float)},
                }
            )
    if entry.kind == "adapter" and found:
        comparison = adapter_before_after(entry.name, entry.version or 1)
        if comparison is not None:
            found[0]["before_after"] = comparison.text
    return found


def check_package(name: str) -> dict[str, Any]:
    """Re-hash every file of a package against its manifest (PackageCorrupt names the file that differs)."""
    return check_manifest(get_package(name).path)


def package_archive_path(name: str) -> Path:
    return get_package(name).archive


def _base_entries() -> list[ModelEntry]:
    entries = [
        _base_entry(info, "embedded" if info.source == "embedded" else "models cache") for info in list_base_models()
    ]
    seen = {e.name for e in entries}
    for registered in registered_models():
        if registered.name in seen:
            entries = [
                e.model_copy(update={"source": "registered"}) if e.name == registered.name else e for e in entries
            ]
            continue
        try:
            info = describe_folder(registered.path, registered.name, "local", check_loadable=False)
            entries.append(_base_entry(info, "registered", registered.registered))
        except BaseModelError as error:
            entries.append(
                _base_entry(registered.info, "registered", registered.registered).model_copy(
                    update={"error": str(error)}
                )
            )
    return entries


def _base_entry(info: BaseModelInfo, source: str, created: datetime | None = None) -> ModelEntry:
    """`created`: when it was registered, else when its converted weights were written (none before that)."""
    config = info.path / "config.json"
    if created is None and info.ready and config.is_file():
        created = datetime.fromtimestamp(config.stat().st_mtime, UTC)
    return ModelEntry(
        kind="base",
        name=info.id,
        architecture=info.architecture,
        parameters=info.parameters,
        dtype=info.dtype,
        size_bytes=info.size_bytes,
        created=created,
        source=source,
        path=str(info.path),
        error=None if info.ready else "Not converted yet: run `make model` (or start any training job).",
        details={"fingerprint": info.fingerprint, "model_type": info.model_type},
    )


def _adapter_entry(record: AdapterRecord, latest: bool) -> ModelEntry:
    return ModelEntry(
        kind="adapter",
        name=record.name,
        version=record.version,
        latest=latest,
        architecture=str(record.base_model.get("architecture", "")),
        parameters=0,
        dtype="float32",
        size_bytes=record.size_bytes,
        created=record.created,
        source=f"job {record.job_id}" if record.job_id else "registry",
        base_model=str(record.base_model.get("id", "")),
        path=str(record.path),
        details={
            "adapter_type": record.adapter_type,
            "objective": record.objective,
            "quantization": record.quantization,
            "rank": record.lora_r,
            "alpha": record.lora_alpha,
            "target_modules": record.target_modules,
            "dataset": record.dataset,
            "eval_dataset": record.eval_dataset,
            "metrics": record.metrics,
            "job_id": record.job_id,
            "experiment": record.config.get("experiment"),
            "config": record.config,
        },
    )


def _package_entry(record: PackageRecord) -> ModelEntry:
    return ModelEntry(
        kind="package",
        name=record.name,
        architecture=str(record.base_model.get("architecture", "")),
        parameters=int(record.base_model.get("parameters", 0)) if record.kind == "merged" else 0,
        dtype=record.dtype,
        size_bytes=record.size_bytes,
        created=record.created,
        source=f"{record.kind} from {record.source.get('label', '')}",
        base_model=str(record.base_model.get("id", "")),
        path=str(record.path),
        details={
            "kind": record.kind,
            "files": record.files,
            "shards": record.shards,
            "archive_bytes": record.archive_bytes,
            "verification": record.verification.model_dump(),
            "adapters": [f"{a['name']} v{a['version']}" for a in record.adapters],
            "serve_command": record.serve_command,
            "licence": record.licence,
            "intended_use": record.intended_use,
            "publish_seconds": record.publish_seconds,
        },
    )


def _annotated(entry: ModelEntry, notes: dict) -> ModelEntry:
    note = notes.get(f"{entry.kind}:{entry.name}")
    return entry.model_copy(update={"description": note.description, "tags": note.tags}) if note else entry


def _haystack(entry: ModelEntry) -> str:
    return " ".join([entry.name, entry.architecture, entry.base_model, entry.description, *entry.tags]).casefold()
