"""Datasets API: upload, list, view, validate, export and delete library datasets."""

from pathlib import Path

from registry import datasets as _library
from registry.access import Role, requires
from registry.datasets import (
    DatasetRecord,
    dataset_file,
    export_dataset,
    get_dataset,
    list_datasets,
    preview_file,
    prune_scratch,
    read_rows,
    sample_rows,
)
from registry.errors import InvalidFile
from registry.readers import EXTENSIONS
from registry.shapes import DatasetKind
from registry.storage import suggest_name
from registry.validation import QualityReport, validate_file

# The encodings the upload offers by name (any Python codec name is accepted too).
ENCODINGS = {
    "utf-8": "UTF-8 (default)",
    "cp1252": "Windows-1252 (Excel on Western Windows)",
    "latin-1": "Latin-1 (ISO-8859-1)",
    "utf-16": "UTF-16 (with byte order mark)",
    "shift_jis": "Shift-JIS",
    "gb18030": "GB18030",
}

__all__ = [
    "ENCODINGS",
    "DatasetKind",
    "DatasetRecord",
    "QualityReport",
    "dataset_file",
    "delete_dataset",
    "export_dataset",
    "get_dataset",
    "import_dataset",
    "list_datasets",
    "preview_file",
    "prune_scratch",
    "read_rows",
    "sample_rows",
    "stage_upload",
    "suggest_name",
    "upload_dataset",
    "validate_dataset",
    "validate_dataset_by_name",
    "validate_file",
]


# Writes: practitioners and admins only, each call audited (registry.access).
stage_upload = requires(Role.PRACTITIONER, "datasets.upload")(_library.stage_upload)
import_dataset = requires(Role.PRACTITIONER, "datasets.import")(_library.import_dataset)
delete_dataset = requires(Role.PRACTITIONER, "datasets.delete")(_library.delete_dataset)
validate_dataset_by_name = requires(Role.PRACTITIONER, "datasets.validate")(_library.validate_dataset_by_name)


def upload_dataset(
    name: str,
    source_path: str | Path,
    *,
    description: str = "",
    kind: DatasetKind | str | None = None,
    encoding: str | None = None,
) -> DatasetRecord:
    """Import a CSV / JSON / JSONL file into the library (a new version if `name` exists); `encoding` if not UTF-8.
    Practitioners only."""
    return import_dataset(name, source_path, description=description, kind=kind, encoding=encoding)


@requires(Role.PRACTITIONER, "datasets.validate")
def validate_dataset(path_or_name: str | Path, *, encoding: str | None = None) -> QualityReport:
    """Quality report for a registry dataset (by name) or for any file path (read as `encoding` if given)."""
    path = Path(path_or_name)
    if isinstance(path_or_name, Path) or path.suffix.lower() in EXTENSIONS or path.is_file():
        if not path.is_file():
            raise InvalidFile(f"File not found: {path}. Check the path and try again.")
        return validate_file(path, encoding=encoding)
    return _library.validate_dataset_by_name(str(path_or_name))
