"""Datasets: list, read, upload, download, validate and delete library datasets."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response

from api.pagination import Page, Paging, page_of, paging
from services import datasets

router = APIRouter(prefix="/datasets", tags=["datasets"])

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


@router.get("")
def list_datasets(
    page: Annotated[Paging, Depends(paging)],
    search: str = "",
    kind: datasets.DatasetKind | None = None,
) -> Page[datasets.DatasetRecord]:
    """Newest first; `search` matches the name or description."""
    return page_of(datasets.list_datasets(search, kind), page)


@router.post("/upload", status_code=201)
def upload_dataset(
    file: Annotated[UploadFile, File(description="A CSV, JSON or JSONL file.")],
    name: Annotated[str, Form(description="Dataset name; an existing name gets a new version.")],
    description: Annotated[str, Form()] = "",
    kind: Annotated[datasets.DatasetKind | None, Form(description="Shape; detected when left out.")] = None,
) -> datasets.DatasetRecord:
    """Import a file as a new dataset (or a new version); a bad file changes nothing."""
    filename = file.filename or f"{name}.jsonl"
    staged = datasets.stage_upload(file.file, filename)
    try:
        return datasets.import_dataset(name, staged, filename=filename, description=description, kind=kind)
    finally:
        staged.unlink(missing_ok=True)


@router.get("/{name}")
def get_dataset(name: str) -> datasets.DatasetRecord:
    return datasets.get_dataset(name)


@router.get("/{name}/rows")
def read_rows(name: str, page: Annotated[Paging, Depends(paging)], version: int | None = None) -> Page[dict[str, Any]]:
    """Records of one version in the canonical shape of its kind."""
    record = datasets.get_dataset(name)
    number = version or record.version
    total = next((v.rows for v in record.versions if v.version == number), 0)
    rows = datasets.read_rows(name, page.offset, page.limit, version=number)
    return Page[dict[str, Any]](items=rows, total=total, offset=page.offset, limit=page.limit)


@router.get("/{name}/download", response_class=Response)
def download_dataset(
    name: str,
    format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
    version: int | None = None,
) -> Response:
    """The stored records as JSONL (the file itself) or CSV."""
    body = datasets.export_dataset(name, format, version)
    number = version or datasets.get_dataset(name).version
    return Response(
        body,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{name}_v{number}.{format}"'},
    )


@router.post("/{name}/validate")
def validate_dataset(name: str) -> datasets.QualityReport:
    """Run the quality report again on the latest version and remember its score."""
    return datasets.validate_dataset_by_name(name)


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_dataset(name: str) -> Response:
    datasets.delete_dataset(name)
    return Response(status_code=204)
