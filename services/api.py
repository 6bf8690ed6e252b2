"""Seed 001's API functions whose arguments differ from the service modules they wrap."""

from pathlib import Path

from services.datasets import DatasetRecord, import_dataset, validate_dataset_by_name
from services.errors import InvalidFile
from services.readers import EXTENSIONS
from services.shapes import DatasetKind
from services.validation import QualityReport, validate_file


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
