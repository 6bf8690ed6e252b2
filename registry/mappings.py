"""Retailer -> RMIS mappings: versioned YAML files, checked before every save and tested on real sample rows.

One file per retailer at `mappings/<slug>.yaml`; every save archives the version it replaces at
`mappings/.history/<slug>/<version>.yaml`. A field's status (ok / partial / failing / untested) is
always computed from sample rows of the mapping's raw source, never stored.
"""

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from registry import raw_sources, rmis, transforms
from registry.activity import log_event
from registry.errors import InvalidMapping, NotFound
from registry.layout import Registry, open_registry
from registry.storage import atomic_write_bytes, atomic_write_text, locked, validate_name

SAMPLE_ROWS = 200
MAX_YAML_BYTES = 256 * 1024
MAX_YAML_NODES = 5_000
DEMO_DIR = Path(__file__).parent / "demo_mappings"
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_TAG = re.compile(r"tag '([^']+)'")
Rows = pd.DataFrame | list[dict[str, Any]]


class FieldMapping(BaseModel):
    """How one RMIS field is filled: read `source`, apply `transform` with `params`."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = None
    target: str
    transform: str = "none"
    params: dict[str, Any] = Field(default_factory=dict)
    notes: str = ""

    @field_validator("source", mode="before")
    @classmethod
    def _blank_is_none(cls, source: Any) -> Any:
        return source.strip() or None if isinstance(source, str) else source


class Mapping(BaseModel):
    """A retailer's mapping onto RMIS, as stored in its YAML file."""

    model_config = ConfigDict(extra="forbid")

    retailer: str = Field(min_length=1, max_length=64)
    version: str = "0.1.0"
    status: Literal["active", "draft"] = "draft"
    source_id: str
    description: str = ""
    fields: list[FieldMapping] = Field(min_length=1)

    @field_validator("retailer")
    @classmethod
    def _strip(cls, retailer: str) -> str:
        return retailer.strip()

    @field_validator("version", mode="before")
    @classmethod
    def _semver(cls, version: Any) -> Any:
        text = str(version).strip().removeprefix("v")
        if not _SEMVER.match(text):
            raise ValueError(f"{version!r} is not MAJOR.MINOR.PATCH like 0.2.0")
        return text

    @field_validator("status", mode="before")
    @classmethod
    def _lower(cls, status: Any) -> Any:
        return status.strip().lower() if isinstance(status, str) else status

    @property
    def slug(self) -> str:
        """File name stem; refuses retailer names that could leave the mappings folder."""
        return _slug(self.retailer)


class Coverage(BaseModel):
    """Share of required RMIS fields the mapping fills."""

    ratio: float
    filled: list[str]
    missing: list[str]


class MappingSummary(BaseModel):
    """One row of the mappings table; `problem` is set when the file cannot be read."""

    retailer: str
    slug: str
    version: str
    status: str
    source_id: str
    fields: int
    coverage: float
    missing: list[str]
    problem: str | None = None


class FieldStatus(BaseModel):
    """How one field's transform fares on the sample rows."""

    target: str
    source: str | None
    transform: str
    status: Literal["ok", "partial", "failing", "untested"]
    checked_rows: int
    failing_rows: int
    first_error: str | None = None

    @property
    def label(self) -> str:
        if self.status == "ok":
            return "✓ ok"
        if self.status == "untested":
            return "– untested (no sample rows)"
        icon = "!" if self.status == "partial" else "✗"
        return f"{icon} {self.failing_rows}/{self.checked_rows} rows fail: {self.first_error}"


class HarmonizeResult(BaseModel):
    """Harmonized rows plus, cell by cell, whether the transform failed and why."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    frame: pd.DataFrame
    failed: pd.DataFrame
    errors: pd.DataFrame

    @property
    def failing_cells(self) -> int:
        return int(self.failed.to_numpy().sum())

    def display_frame(self) -> pd.DataFrame:
        """Harmonized values as text, with each failing cell showing its reason instead of a blank."""
        shown = self.frame.map(lambda value: "" if value is None else str(value))
        reasons = self.errors.map(lambda error: f"✗ {error}" if error else "")
        return shown.where(~self.failed, reasons)


def parse_mapping_yaml(text: str) -> Mapping:
    """Read mapping YAML typed by a person; every refusal says where and why."""
    if len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise InvalidMapping(f"The YAML is larger than {MAX_YAML_BYTES // 1024} KB; a mapping is a few KB.")
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as error:
        tag = _TAG.search(str(error.problem))
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!") if tag else "this tag"
        raise InvalidMapping(
            f"Line {_line(error)}: the YAML tag {shown} is not allowed. Mappings are plain data: "
            "remove the tag and write the value itself."
        ) from None
    except yaml.MarkedYAMLError as error:
        raise InvalidMapping(f"Line {_line(error)}: invalid YAML: {error.problem or error}.") from None
    except yaml.YAMLError as error:
        raise InvalidMapping(f"Invalid YAML: {error}.") from None
    except RecursionError:
        raise InvalidMapping("The YAML is nested too deeply; a mapping is a flat list of fields.") from None
    if data is None:
        raise InvalidMapping("The YAML is empty; start from an existing mapping's YAML.")
    if not isinstance(data, dict):
        raise InvalidMapping("The YAML must be a mapping with retailer, version, status, source_id and fields.")
    if _node_count(data) > MAX_YAML_NODES:
        raise InvalidMapping(f"The YAML expands to more than {MAX_YAML_NODES} values; a mapping is far smaller.")
    return make_mapping(data)


def make_mapping(data: dict[str, Any]) -> Mapping:
    """Build and check a Mapping from plain data (YAML or the editor)."""
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as error:
        raise InvalidMapping(_bullets([_explain(item) for item in error.errors()])) from None
    _slug(mapping.retailer)
    _compile(mapping)
    return mapping


def mapping_to_yaml(mapping: Mapping) -> str:
    """The stored form: stable key order, empty params and notes left out."""
    fields = []
    for field in mapping.fields:
        entry: dict[str, Any] = {} if field.source is None else {"source": field.source}
        entry |= {"target": field.target, "transform": field.transform}
        if field.params:
            entry["params"] = field.params
        if field.notes:
            entry["notes"] = field.notes
        fields.append(entry)
    document = mapping.model_dump(include={"retailer", "version", "status", "source_id", "description"})
    return yaml.safe_dump(document | {"fields": fields}, sort_keys=False, allow_unicode=True, width=100)


def coverage(mapping: Mapping) -> Coverage:
    targets = {field.target for field in mapping.fields}
    filled = [name for name in rmis.REQUIRED_FIELDS if name in targets]
    missing = [name for name in rmis.REQUIRED_FIELDS if name not in targets]
    return Coverage(ratio=len(filled) / len(rmis.REQUIRED_FIELDS), filled=filled, missing=missing)


def harmonize(mapping: Mapping, rows: Rows) -> HarmonizeResult:
    """Apply every field of the mapping to every row; failures become flagged cells, never exceptions."""
    compiled = _compile(mapping)
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    present = set(frame.columns)
    records = frame.to_dict("records")
    values: dict[str, list[Any]] = {field.target: [] for field, _, _ in compiled}
    errors: dict[str, list[str | None]] = {field.target: [] for field, _, _ in compiled}
    for record in records:
        for field, target, params in compiled:
            value, error = None, None
            if field.transform != "constant" and field.source not in present:
                error = f"column {field.source!r} is not in the source"
            else:
                try:
                    raw = record.get(field.source) if field.source else None
                    value = rmis.check_value(target, transforms.apply(field.transform, raw, params))
                except (transforms.TransformError, rmis.RmisValueError) as problem:
                    error = str(problem)
            values[field.target].append(value)
            errors[field.target].append(error)
    columns = list(values)
    error_frame = pd.DataFrame(errors, index=frame.index, columns=columns, dtype=object)
    return HarmonizeResult(
        frame=pd.DataFrame(values, index=frame.index, columns=columns, dtype=object),
        failed=error_frame.notna(),
        errors=error_frame,
    )


_statuses_memo: dict[tuple[str, tuple[str, ...], bytes], list[FieldStatus]] = {}
_MEMO_SIZE = 32


def field_status(mapping: Mapping, rows: Rows) -> list[FieldStatus]:
    """How each field fares on `rows`. A pure function of the mapping and the rows, remembered for the last few
    pairs: the Schema Mappings page asks it for the same saved mapping and sample rows on every run, and harmonizing
    200 rows field by field was the page's slowest call (0.2 s on a busy machine)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    try:
        cells = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    except TypeError:  # unhashable cells (lists, dicts): nothing to remember them by
        return _statuses(mapping, harmonize(mapping, frame))
    key = (mapping.model_dump_json(), tuple(f"{name}:{dtype}" for name, dtype in frame.dtypes.items()), cells)
    if key not in _statuses_memo:
        if len(_statuses_memo) >= _MEMO_SIZE:
            _statuses_memo.pop(next(iter(_statuses_memo)))
        _statuses_memo[key] = _statuses(mapping, harmonize(mapping, frame))
    return [status.model_copy() for status in _statuses_memo[key]]


def sample_rows(mapping: Mapping, registry: Registry | None = None) -> pd.DataFrame:
    """The first rows of the mapping's raw source; NotFound until the sources are generated."""
    return raw_sources.load_source(mapping.source_id, registry).head(SAMPLE_ROWS)


def list_mappings(registry: Registry | None = None) -> list[MappingSummary]:
    registry = registry or open_registry()
    summaries = []
    for path in sorted(registry.mappings.glob("*.yaml")):
        try:
            mapping = _read(path)
        except InvalidMapping as error:
            summaries.append(
                MappingSummary(
                    retailer=path.stem,
                    slug=path.stem,
                    version="?",
                    status="invalid",
                    source_id="?",
                    fields=0,
                    coverage=0.0,
                    missing=[],
                    problem=str(error),
                )
            )
            continue
        cov = coverage(mapping)
        summaries.append(
            MappingSummary(
                retailer=mapping.retailer,
                slug=path.stem,
                version=mapping.version,
                status=mapping.status,
                source_id=mapping.source_id,
                fields=len(mapping.fields),
                coverage=cov.ratio,
                missing=cov.missing,
            )
        )
    return summaries


def get_mapping(retailer: str, registry: Registry | None = None) -> Mapping:
    return _read(_path(retailer, registry or open_registry()))


def get_mapping_yaml(retailer: str, version: str | None = None, registry: Registry | None = None) -> str:
    """The stored text of the current mapping, or of an archived version."""
    registry = registry or open_registry()
    path = _path(retailer, registry)
    if version is not None and version != _read(path).version:
        if not _SEMVER.match(version):
            raise NotFound(f"Version {version!r} is not MAJOR.MINOR.PATCH like 0.2.0.")
        path = registry.mappings / ".history" / path.stem / f"{version}.yaml"
        if not path.exists():
            raise NotFound(f"{retailer} has no archived version {version}.")
    return path.read_text(encoding="utf-8")


def mapping_history(retailer: str, registry: Registry | None = None) -> list[str]:
    """Archived versions, newest first."""
    registry = registry or open_registry()
    folder = registry.mappings / ".history" / _path(retailer, registry).stem
    versions = [path.stem for path in folder.glob("*.yaml") if _SEMVER.match(path.stem)]
    return sorted(versions, key=_semver_key, reverse=True)


def save_mapping(
    mapping: Mapping | str,
    *,
    bump: bool = True,
    expected_retailer: str | None = None,
    registry: Registry | None = None,
) -> Mapping:
    """Check, test on sample rows, archive the current version and write the new one; refusals change nothing.

    With `bump`, the saved version is the stored one plus a patch (0.2.0 -> 0.2.1); a mapping
    edited from an older version than the stored one is refused, so concurrent editors never
    overwrite each other silently. Returns what is now stored (unchanged when nothing changed).
    """
    registry = registry or open_registry()
    if isinstance(mapping, str):
        mapping = parse_mapping_yaml(mapping)
    if expected_retailer is not None and mapping.slug != _slug(expected_retailer):
        raise InvalidMapping(
            f"This YAML is for retailer {mapping.retailer!r}, not {expected_retailer!r}; keep the retailer name."
        )
    _check_sample_rows(mapping, registry)
    path = registry.mappings / f"{mapping.slug}.yaml"
    with locked(registry.locks, f"mapping-{mapping.slug}"):
        stored_bytes = path.read_bytes() if path.exists() else None
        stored = _stored_or_none(path) if stored_bytes is not None else None
        if stored == mapping:
            return stored
        saved = mapping.model_copy(update={"version": _next_version(stored, mapping, bump)})
        if stored_bytes is not None:
            name = stored.version if stored else f"unreadable-{hashlib.sha256(stored_bytes).hexdigest()[:8]}"
            atomic_write_bytes(registry.mappings / ".history" / mapping.slug / f"{name}.yaml", stored_bytes)
        atomic_write_text(path, mapping_to_yaml(saved))
    previous = stored.version if stored else None
    log_event(
        "mapping.saved",
        f"Saved {saved.retailer} mapping v{saved.version}",
        registry,
        retailer=saved.retailer,
        version=saved.version,
        previous=previous,
    )
    return saved


def editor_rows(mapping: Mapping, statuses: list[FieldStatus] | None = None) -> pd.DataFrame:
    """The mapping as an editable table: params as one JSON text cell, status as a read-only label."""
    labels = {status.target: status.label for status in statuses or []}
    return pd.DataFrame(
        [
            {
                "source": field.source or "",
                "target": field.target,
                "transform": field.transform,
                "params": json.dumps(field.params, ensure_ascii=False) if field.params else "",
                "notes": field.notes,
                "status": labels.get(field.target, "– untested"),
            }
            for field in mapping.fields
        ],
        columns=["source", "target", "transform", "params", "notes", "status"],
    )


def mapping_from_editor(
    base: Mapping,
    rows: list[dict[str, Any]],
    *,
    status: str | None = None,
    description: str | None = None,
) -> Mapping:
    """Rebuild a mapping from edited table rows; blank rows are dropped, the status column is ignored."""
    fields, problems = [], []
    for number, row in enumerate(rows, 1):
        cells = {key: _cell(row.get(key)) for key in ("source", "target", "transform", "params", "notes")}
        if not any(cells.values()):
            continue
        try:
            params = yaml.safe_load(cells["params"]) if cells["params"] else {}
        except yaml.YAMLError as error:
            problems.append(f"Row {number}: params are not valid JSON: {getattr(error, 'problem', error)}")
            continue
        if not isinstance(params, dict):
            problems.append(f'Row {number}: params must be a JSON object like {{"divisor": 1000000}}')
            continue
        fields.append(
            {
                "source": cells["source"],
                "target": cells["target"],
                "transform": cells["transform"] or "none",
                "params": params,
                "notes": cells["notes"],
            }
        )
    if problems:
        raise InvalidMapping(_bullets(problems))
    data = base.model_dump() | {"fields": fields}
    if status is not None:
        data["status"] = status
    if description is not None:
        data["description"] = description
    return make_mapping(data)


def install_demo_mappings(registry: Registry) -> list[str]:
    """Copy the shipped mappings into the registry, never replacing one that exists; returns the slugs copied."""
    installed = []
    for shipped in sorted(DEMO_DIR.glob("*.yaml")):
        target = registry.mappings / shipped.name
        with locked(registry.locks, f"mapping-{shipped.stem}"):
            if not target.exists():
                atomic_write_bytes(target, shipped.read_bytes())
                installed.append(shipped.stem)
    if installed:
        log_event("mapping.installed", f"Installed demo mappings: {', '.join(installed)}", registry)
    return installed


def _compile(mapping: Mapping) -> list[tuple[FieldMapping, rmis.RmisField, transforms.Params]]:
    """Resolve each field's RMIS target and params, collecting every problem before refusing."""
    problems: list[str] = []
    if mapping.source_id not in raw_sources.SOURCE_IDS:
        problems.append(
            f"source_id {mapping.source_id!r} is not a raw source; choose one of {', '.join(raw_sources.SOURCE_IDS)}"
        )
    compiled = []
    seen: dict[str, int] = {}
    for number, field in enumerate(mapping.fields, 1):
        label = f"Field {number} ({field.target})"
        target = rmis.FIELDS_BY_NAME.get(field.target)
        if target is None:
            close = difflib.get_close_matches(field.target, rmis.FIELDS_BY_NAME, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; choose one of {', '.join(rmis.FIELDS_BY_NAME)}"
            problems.append(f"{label}: {field.target!r} is not an RMIS field{hint}")
            continue
        if field.target in seen:
            problems.append(
                f"{label}: {field.target} is already filled by field {seen[field.target]}; "
                "each RMIS field is filled once"
            )
            continue
        seen[field.target] = number
        try:
            params = transforms.validate_params(field.transform, field.params)
        except transforms.TransformError as error:
            problems.append(f"{label}: {error}")
            continue
        if field.transform != "constant" and not field.source:
            problems.append(f"{label}: no source column; name the column to read, or use the constant transform")
        for what, value in _target_values(params):
            try:
                rmis.check_value(target, value)
            except rmis.RmisValueError as error:
                problems.append(f"{label}: {what} is {value!r}, but {error}")
        compiled.append((field, target, params))
    if problems:
        raise InvalidMapping(_bullets(problems))
    return compiled


def _target_values(params: transforms.Params) -> list[tuple[str, Any]]:
    """Values a mapping writes into RMIS verbatim, which can be checked before any row is read."""
    values = [] if params.default is None else [("the default", params.default)]
    if isinstance(params, transforms.ConstantParams):
        values.append(("the constant value", params.value))
    if isinstance(params, transforms.EnumMapParams):
        values.extend((f"the enum_map value for {key!r}", value) for key, value in params.table.items())
    return values


def _check_sample_rows(mapping: Mapping, registry: Registry) -> None:
    """Refuse a mapping whose transforms fail on its source's sample rows (skipped until sources exist)."""
    try:
        rows = sample_rows(mapping, registry)
    except NotFound:
        return
    result = harmonize(mapping, rows)
    problems = []
    for number, status in enumerate(_statuses(mapping, result), 1):
        if status.failing_rows:
            first_row = result.failed.index[result.failed[status.target].to_numpy()][0]
            problems.append(
                f"Field {number} ({status.target}) fails on {status.failing_rows} of {status.checked_rows} sample rows "
                f"of {mapping.source_id}; first at row {_row_number(first_row)}: {status.first_error}"
            )
    if problems:
        raise InvalidMapping(_bullets(problems))


def _statuses(mapping: Mapping, result: HarmonizeResult) -> list[FieldStatus]:
    statuses = []
    checked = len(result.frame)
    for field in mapping.fields:
        failing = int(result.failed[field.target].sum()) if checked else 0
        if not checked:
            status = "untested"
        elif not failing:
            status = "ok"
        else:
            status = "failing" if failing == checked else "partial"
        first = result.errors[field.target].dropna()
        statuses.append(
            FieldStatus(
                target=field.target,
                source=field.source,
                transform=field.transform,
                status=status,
                checked_rows=checked,
                failing_rows=failing,
                first_error=str(first.iloc[0]) if failing else None,
            )
        )
    return statuses


def _next_version(stored: Mapping | None, mapping: Mapping, bump: bool) -> str:
    if stored is None:
        return mapping.version
    given, current = _semver_key(mapping.version), _semver_key(stored.version)
    if bump and given < current:
        raise InvalidMapping(
            f"{stored.retailer} was saved as v{stored.version} after you opened v{mapping.version}. "
            "Reload to see those changes, then apply yours again."
        )
    if bump and given == current:
        return f"{current[0]}.{current[1]}.{current[2] + 1}"
    if not bump and given <= current:
        raise InvalidMapping(f"Version {mapping.version} is not newer than the saved v{stored.version}.")
    return mapping.version


def _slug(retailer: str) -> str:
    return validate_name(retailer.strip().lower().replace(" ", "_"), "retailer name")


def _path(retailer: str, registry: Registry) -> Path:
    path = registry.mappings / f"{_slug(retailer)}.yaml"
    if not path.exists():
        raise NotFound(f"There is no mapping for {retailer!r}. Create one or install the demo mappings.")
    return path


_parsed: dict[Path, tuple[tuple[int, int, int], Mapping]] = {}


def _read(path: Path) -> Mapping:
    """The stored mapping, parsed once per version of its file: Home, Schema Mappings and the Data Browser list every
    mapping on each run, and parsing YAML is the slow part. Our writes replace the file (a new inode) and a hand edit
    moves its mtime or size, so a changed file is always read again; callers get their own copy to change."""
    fix = f"Save a corrected version on the Schema Mappings page, or remove the file ('{path}') to drop it."
    try:
        info = path.stat()  # before reading: the text read is never older than the stamp it is kept under
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        cached = _parsed.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1].model_copy(deep=True)
        mapping = parse_mapping_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidMapping(f"{path} cannot be read: {error}. {fix}") from None
    except InvalidMapping as error:
        raise InvalidMapping(f"{path}: {error} {fix}") from None
    _parsed[path] = (stamp, mapping)
    return mapping.model_copy(deep=True)


def _stored_or_none(path: Path) -> Mapping | None:
    """The stored mapping, or None when the file is unreadable (it is archived, then replaced)."""
    try:
        return _read(path)
    except InvalidMapping:
        return None


def _semver_key(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def _line(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    return f"{mark.line + 1}, column {mark.column + 1}" if mark else "?"


def _node_count(data: Any) -> int:
    """Count values without recursion, stopping early, so alias bombs cannot exhaust memory or time."""
    count, stack = 0, [data]
    while stack and count <= MAX_YAML_NODES:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _explain(item: Any) -> str:
    loc = list(item["loc"])
    where = loc.pop(0) if loc else ""
    if where == "fields" and loc and isinstance(loc[0], int):
        where = f"Field {loc.pop(0) + 1}"
    where = " ".join([str(where), *map(str, loc)]).strip()
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "is not a known key"
    elif item["type"] == "missing":
        message = "is required"
    if not where:
        return message
    return f"{where} {message}" if message.startswith("is ") else f"{where}: {message}"


def _bullets(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems:\n" + "\n".join(f"- {problem}" for problem in problems)


def _cell(value: Any) -> str:
    """Editor cells arrive as str, None or NaN; all blanks become ''."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value).strip()


def _row_number(label: Any) -> Any:
    return label + 1 if isinstance(label, int) else label
