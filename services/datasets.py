"""Datasets API: upload, list, view, validate, export and delete library datasets."""

from pathlib import Path

from registry.datasets import (
    DatasetRecord,
    dataset_file,
    delete_dataset,
    export_dataset,
    get_dataset,
    import_dataset,
    list_datasets,
    preview_file,
    read_rows,
    stage_upload,
    validate_dataset_by_name,
)
from registry.errors import InvalidFile
from registry.readers import EXTENSIONS
from registry.shapes import DatasetKind
from registry.storage import suggest_name
from registry.validation import QualityReport, validate_file

__all__ = [
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
    "read_rows",
    "stage_upload",
    "suggest_name",
    "upload_dataset",
    "validate_dataset",
    "validate_dataset_by_name",
    "validate_file",
]


def upload_dataset(
    name: str, source_path: str | Path, *, description: str = "", kind: DatasetKind | str | None = None
) -> DatasetRecord:
    """Import a CSV / JSON / JSONL file into the library (a new version if `name` exists)."""
    return import_dataset(name, source_path, description=description, kind=kind)


def validate_dataset(path_or_name: str | Path) -> QualityReport:
    """Quality report for a registry dataset (by name) or for any file path."""
    path = Path(path_or_name)
    if isinstance(path_or_name, Path) or path.suffix.lower() in EXTENSIONS or path.is_file():
        if not path.is_file():
            raise InvalidFile(f"File not found: {path}. Check the path and try again.")
        return validate_file(path)
    return validate_dataset_by_name(str(path_or_name))
