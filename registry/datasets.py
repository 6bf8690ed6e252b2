"""The dataset library: import files into canonical JSONL, version them, list, read, export and delete.

Layout: `library/<name>/meta.json` plus one `v<N>.jsonl` per version. Every change happens under the
library lock and lands with `os.replace`, so concurrent sessions and processes never lose a version.
"""

import hashlib
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from registry.activity import log_event
from registry.errors import CorruptFile, InvalidFile, InvalidName, NotFound
from registry.layout import Registry, open_registry
from registry.readers import EXTENSIONS, FileFormat, detect_format, read_strict, utf8_source
from registry.shapes import AdapterType, DatasetKind, ShapeDetection, ShapeError, detect_kind, to_canonical
from registry.spreadsheet import write_csv
from registry.storage import (
    atomic_write_json,
    bump_generation,
    case_clash,
    contained,
    list_stamp,
    load_each,
    load_json_cached,
    locked,
    prune,
    validate_name,
)
from registry.validation import QualityReport, validate_file

ExportFormat = Literal["jsonl", "csv"]
STAGED_MAX_AGE_S = 6 * 3600  # a browser session that closes mid-upload never cleans up after itself
# What each generator's datasets train (the generator's id opens a generated dataset's origin, `generated_origin`).
# An upload says nothing of its purpose: its record's purpose is None.
GENERATOR_PURPOSES: dict[str, AdapterType] = {
    "retailer_sft": "retailer",
    "planning_sft": "task",
    "policy_dpo": "policy",
}
_GENERATED = "generator:"


def generated_origin(generator: str, detail: str) -> str:
    """The origin of a dataset `generator` made: a generator says what its datasets train before it writes any."""
    if generator not in GENERATOR_PURPOSES:
        raise KeyError(f"generator {generator!r} has no entry in GENERATOR_PURPOSES")
    return f"{_GENERATED}{generator} ({detail})"


class DatasetVersion(BaseModel):
    model_config = ConfigDict(frozen=True)

    version: int
    rows: int
    size_bytes: int
    content_hash: str
    created: datetime
    source: str
    quality_score: int | None = None
    quality_band: str | None = None


class DatasetRecord(BaseModel):
    """What the library table shows and what training reads to find a dataset's file and lineage."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: DatasetKind
    description: str = ""
    origin: str = Field(default="upload", description="'upload' or the generator that made it")
    created: datetime
    versions: list[DatasetVersion]
    unchanged: bool = Field(
        default=False,
        exclude=True,
        description="Set on what an import returns when the file held the latest version's content: no version "
        "was written (never stored)",
    )

    @property
    def latest(self) -> DatasetVersion:
        return self.versions[-1]

    @property
    def version(self) -> int:
        return self.latest.version

    @property
    def rows(self) -> int:
        return self.latest.rows

    @property
    def size_bytes(self) -> int:
        return self.latest.size_bytes

    @property
    def content_hash(self) -> str:
        return self.latest.content_hash

    @property
    def quality_score(self) -> int | None:
        return self.latest.quality_score

    @property
    def updated(self) -> datetime:
        return self.latest.created

    @property
    def type_label(self) -> str:
        return self.kind.label

    @property
    def purpose(self) -> AdapterType | None:
        """The adapter type this dataset trains, when the generator that made it says so (None for an upload)."""
        if not self.origin.startswith(_GENERATED):
            return None
        return GENERATOR_PURPOSES.get(self.origin.removeprefix(_GENERATED).split(" ", 1)[0])


class FilePreview(BaseModel):
    """A staged file before import: its format, the detected shape and a few records to look at."""

    filename: str
    format: FileFormat
    size_bytes: int
    detection: ShapeDetection
    sample: list[dict[str, Any]]


_list_cache: dict[Path, tuple[tuple[Any, ...], tuple[list[DatasetRecord], list[CorruptFile]]]] = {}


def stage_upload(stream: BinaryIO, filename: str, registry: Registry | None = None) -> Path:
    """Copy an uploaded stream to a private file in the registry's uploads folder in chunks, refusing it past the
    size limit. `import_dataset` removes it once imported; old ones are pruned."""
    registry = registry or open_registry()
    limit = registry.settings.max_upload_bytes
    suffix = Path(filename).suffix.lower()
    if suffix not in EXTENSIONS:
        suffix = ""
    prune(registry.uploads, STAGED_MAX_AGE_S)
    registry.uploads.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=registry.uploads, prefix="upload-", suffix=suffix, delete=False)
    total = 0
    try:
        with handle:
            while chunk := stream.read(1 << 20):
                total += len(chunk)
                if total > limit:
                    raise InvalidFile(
                        f"The file is larger than the upload limit of {registry.settings.max_upload_mb} MB "
                        "(setting RMN_LORA_MAX_UPLOAD_MB)."
                    )
                handle.write(chunk)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return Path(handle.name)


def prune_scratch(registry: Registry | None = None, max_age_s: float = 3600) -> int:
    """At start-up: staged uploads, half-written imports of a killed process and leftover trash in the registry's
    .tmp folder, untouched for an hour, go; so does at once the staging folder of work whose process died (a
    publish killed mid-way). Returns how many entries were removed."""
    registry = registry or open_registry()
    removed = prune(registry.uploads, max_age_s)
    return removed + prune(registry.tmp, max_age_s, locks=registry.locks)


def preview_file(
    path: Path, filename: str | None = None, sample: int = 5, *, encoding: str | None = None
) -> FilePreview:
    """Read just enough of a file to show its shape; a bad early line is reported here, before import."""
    settings = open_registry().settings
    _check_source(path, settings.max_upload_bytes, settings.max_upload_mb)
    with utf8_source(path, encoding) as source:
        return _preview(source, filename or path.name, sample, settings.max_line_bytes)


def _preview(path: Path, filename: str, sample: int, max_line_bytes: int) -> FilePreview:
    fmt = detect_format(path, filename)
    head = [item.record for item in islice(read_strict(path, fmt, max_line_bytes), 200)]
    detection = detect_kind(head)
    return FilePreview(
        filename=filename,
        format=fmt,
        size_bytes=path.stat().st_size,
        detection=detection,
        sample=head[:sample],
    )


def import_dataset(
    name: str,
    source_path: str | Path,
    *,
    filename: str | None = None,
    description: str = "",
    kind: DatasetKind | str | None = None,
    origin: str = "upload",
    encoding: str | None = None,
    registry: Registry | None = None,
) -> DatasetRecord:
    """Import a file as a new dataset or a new version of one; any error leaves the registry as it was.

    The file is read by the readers validation uses, and its quality report is the report of the file as
    uploaded (its lines), so the score stored with the version is the one `validate_file` gives it.
    `encoding` names the file's text encoding when it is not UTF-8 (e.g. cp1252).
    """
    registry = registry or open_registry()
    validate_name(name, "dataset name")
    source_path = Path(source_path)
    settings = registry.settings
    _check_source(source_path, settings.max_upload_bytes, settings.max_upload_mb)
    filename = filename or source_path.name
    with utf8_source(source_path, encoding) as source:
        fmt = detect_format(source, filename)
        target_kind = _kind(kind) if kind else _preview(source, filename, 0, settings.max_line_bytes).detection.kind
        staged = registry.tmp / f"import-{uuid.uuid4().hex}.jsonl"
        try:
            rows, digest = _write_canonical(read_strict(source, fmt, settings.max_line_bytes), target_kind, staged)
            report = validate_file(source, kind=target_kind, filename=filename)
            with locked(registry.locks, "library"):
                record = _commit_version(
                    registry, name, staged, target_kind, rows, digest, report, filename, description, origin
                )
        finally:
            staged.unlink(missing_ok=True)
    if source_path.parent == registry.uploads:
        source_path.unlink(missing_ok=True)  # the staged upload has done its job
    return record


def list_datasets(
    search: str = "", kind: DatasetKind | str | None = None, registry: Registry | None = None
) -> list[DatasetRecord]:
    """Newest first. The whole list is cached until the library's generation stamp changes (any write, any process)."""
    registry = registry or open_registry()
    needle = search.strip().casefold()
    return [
        record
        for record in _all_records(registry)
        if (not kind or record.kind == _kind(kind))
        and (not needle or needle in record.name.casefold() or needle in record.description.casefold())
    ]


def broken_datasets(registry: Registry | None = None) -> list[CorruptFile]:
    """Library folders whose meta.json cannot be read: the list skips them, the page names them."""
    registry = registry or open_registry()
    return _scan(registry)[1]


def get_dataset(name: str, registry: Registry | None = None) -> DatasetRecord:
    registry = registry or open_registry()
    validate_name(name, "dataset name")
    record = _load_meta(registry.library / name / "meta.json")
    if record is None:
        raise NotFound(f"No dataset named {name!r}. Upload it on the Dataset Library page first.")
    return record


def dataset_file(name: str, version: int | None = None, registry: Registry | None = None) -> Path:
    registry = registry or open_registry()
    record = get_dataset(name, registry)
    number = version or record.version
    if number not in {v.version for v in record.versions}:
        raise NotFound(f"Dataset {name!r} has no version {number}.")
    return contained(registry.root, registry.library / name / f"v{number}.jsonl")


def read_rows(
    name: str, offset: int = 0, limit: int = 50, version: int | None = None, registry: Registry | None = None
) -> list[dict[str, Any]]:
    path = dataset_file(name, version, registry)
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in islice(handle, offset, offset + limit)]


def spread(items: Sequence[Any], count: int | None) -> list[Any]:
    """`count` of `items` spread evenly over them, the first included, the same ones each time (all of them when
    `count` is None or not smaller). What a limited evaluation or A/B scores: the first records of a file listed by
    field or task (the generated held-out splits are) are one field only."""
    if count is None or count >= len(items):
        return list(items)
    return [items[position * len(items) // count] for position in range(count)]


def sample_rows(
    name: str, count: int | None, version: int | None = None, registry: Registry | None = None
) -> list[dict[str, Any]]:
    """`count` rows of a dataset spread evenly over it (`spread`)."""
    return spread(list(iter_dataset(name, version, registry)), count)


def iter_dataset(name: str, version: int | None = None, registry: Registry | None = None) -> Iterator[dict[str, Any]]:
    with open(dataset_file(name, version, registry), "rb") as handle:
        for line in handle:
            yield orjson.loads(line)


def validate_dataset_by_name(name: str, registry: Registry | None = None) -> QualityReport:
    """Re-run the quality report on the latest version and remember its score in the library."""
    registry = registry or open_registry()
    record = get_dataset(name, registry)
    report = validate_file(dataset_file(name, registry=registry), kind=record.kind)
    with locked(registry.locks, "library"):
        current = get_dataset(name, registry)
        versions = [
            v.model_copy(update={"quality_score": report.quality_score, "quality_band": report.band})
            if v.version == record.version
            else v
            for v in current.versions
        ]
        _write_meta(registry, current.model_copy(update={"versions": versions}))
    return report


def export_dataset(
    name: str, fmt: ExportFormat = "jsonl", version: int | None = None, registry: Registry | None = None
) -> bytes:
    """JSONL is the stored file itself; CSV writes nested fields (messages, DPO prompts) as JSON text, with formula
    cells made inert (registry.spreadsheet), and imports back as the same records."""
    path = dataset_file(name, version, registry)
    if fmt == "jsonl":
        return path.read_bytes()
    if fmt != "csv":
        raise InvalidFile(f"Unknown export format {fmt!r}: choose jsonl or csv.")
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return write_csv(columns, ({key: _csv_cell(value) for key, value in row.items()} for row in rows))


def delete_dataset(name: str, registry: Registry | None = None) -> None:
    """Move the folder out of the library in one rename, then remove it: readers never see half a dataset."""
    registry = registry or open_registry()
    try:
        get_dataset(name, registry)
    except CorruptFile:
        pass  # a dataset whose meta.json is unreadable can still be removed
    with locked(registry.locks, "library"):
        trash = registry.tmp / f"deleted-{name}-{uuid.uuid4().hex}"
        (registry.library / name).rename(trash)
        bump_generation(registry.library)
    shutil.rmtree(trash, ignore_errors=True)
    log_event("dataset.deleted", f"Deleted dataset {name}", registry, dataset=name)


def write_records(
    name: str,
    records: Iterable[dict[str, Any]],
    kind: DatasetKind,
    *,
    description: str = "",
    origin: str,
    registry: Registry | None = None,
) -> DatasetRecord:
    """Import records made in code (generators) through the same path as an upload."""
    registry = registry or open_registry()
    with tempfile.TemporaryDirectory(prefix="rmn-gen-") as folder:
        path = Path(folder) / f"{name}.jsonl"
        with open(path, "wb") as handle:
            for record in records:
                handle.write(orjson.dumps(record) + b"\n")
        return import_dataset(name, path, description=description, kind=kind, origin=origin, registry=registry)


def _kind(kind: DatasetKind | str) -> DatasetKind:
    try:
        return DatasetKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in DatasetKind)
        raise InvalidFile(f"Unknown dataset type {kind!r}; choose one of: {choices}.") from None


def _check_source(path: Path, limit: int, limit_mb: int) -> None:
    if not path.is_file():
        raise InvalidFile(f"File not found: {path}. Check the path and try again.")
    if path.stat().st_size > limit:
        raise InvalidFile(
            f"The file is larger than the upload limit of {limit_mb} MB (setting RMN_LORA_MAX_UPLOAD_MB)."
        )


def _write_canonical(records: Iterable[Any], kind: DatasetKind, staged: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    rows = 0
    with open(staged, "wb") as handle:
        for item in records:
            try:
                canonical = to_canonical(item.record, kind)
            except ShapeError as exc:
                raise InvalidFile(f"{exc} Fix this record or choose another dataset type.", line=item.line) from None
            line = orjson.dumps(canonical) + b"\n"
            digest.update(line)
            handle.write(line)
            rows += 1
    if rows == 0:
        raise InvalidFile("The file has no records to import.")
    return rows, digest.hexdigest()


def _commit_version(
    registry: Registry,
    name: str,
    staged: Path,
    kind: DatasetKind,
    rows: int,
    digest: str,
    report: QualityReport,
    source: str,
    description: str,
    origin: str,
) -> DatasetRecord:
    folder = registry.library / name
    clash = case_clash(registry.library, name)
    if clash is not None:
        raise InvalidName(
            f"A dataset named {clash!r} already exists; names that differ only in case would merge on "
            f"Windows and macOS. Use {clash!r} to add a version, or choose another name."
        )
    existing = _load_meta(folder / "meta.json")
    if existing is not None:
        if existing.kind != kind:
            raise InvalidFile(
                f"Dataset {name!r} holds {existing.kind.value} records; this file is {kind.value}. "
                "Choose another name or the matching type."
            )
        if existing.content_hash == digest:
            return existing.model_copy(update={"unchanged": True})
    now = datetime.now(UTC)
    version = DatasetVersion(
        version=existing.version + 1 if existing else 1,
        rows=rows,
        size_bytes=staged.stat().st_size,
        content_hash=digest,
        created=now,
        source=source,
        quality_score=report.quality_score,
        quality_band=report.band,
    )
    record = DatasetRecord(
        name=name,
        kind=kind,
        description=description or (existing.description if existing else ""),
        origin=origin,
        created=existing.created if existing else now,
        versions=[*(existing.versions if existing else []), version],
    )
    folder.mkdir(parents=True, exist_ok=True)
    staged.replace(folder / f"v{version.version}.jsonl")
    _write_meta(registry, record)
    log_event(
        "dataset.imported",
        f"Imported {name} v{version.version} ({rows} rows, quality {report.quality_score})",
        registry,
        dataset=name,
        version=version.version,
    )
    return record


def _write_meta(registry: Registry, record: DatasetRecord) -> None:
    atomic_write_json(registry.library / record.name / "meta.json", record.model_dump(mode="json"))
    bump_generation(registry.library)


def _all_records(registry: Registry) -> list[DatasetRecord]:
    return _scan(registry)[0]


def _scan(registry: Registry) -> tuple[list[DatasetRecord], list[CorruptFile]]:
    metas = [entry / "meta.json" for entry in registry.library.iterdir() if entry.is_dir()]
    stamp = list_stamp(registry.library, metas)
    cached = _list_cache.get(registry.library)
    if cached and cached[0] == stamp:
        return cached[1]
    records, broken = load_each(metas, _load_meta)
    records.sort(key=lambda r: r.updated, reverse=True)
    _list_cache[registry.library] = (stamp, (records, broken))
    return records, broken


def _load_meta(path: Path) -> DatasetRecord | None:
    fix = (
        f"Restore it from a backup, or delete the dataset {path.parent.name!r} on the Dataset Library page "
        f"(or remove its folder '{path.parent}')."
    )
    return load_json_cached(path, DatasetRecord.model_validate, fix)


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode("utf-8")
    return value
