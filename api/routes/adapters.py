"""Adapters: trained LoRA versions with their lineage, and each version's files as a zip."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from api.pagination import Page, Paging, page_of, paging
from services import training

router = APIRouter(prefix="/adapters", tags=["adapters"])


@router.get("")
def list_adapters(page: Annotated[Paging, Depends(paging)], search: str = "") -> Page[training.AdapterRecord]:
    """The latest version of every adapter, newest first."""
    return page_of(training.list_adapters(search), page)


@router.get("/{name}")
def adapter_versions(name: str, page: Annotated[Paging, Depends(paging)]) -> Page[training.AdapterRecord]:
    """Every version of one adapter, oldest first."""
    return page_of(training.adapter_versions(name), page)


@router.get("/{name}/versions/{version}")
def get_adapter(name: str, version: int) -> training.AdapterRecord:
    return training.get_adapter(name, version)


@router.get("/{name}/versions/{version}/download", response_class=Response)
def download_adapter(name: str, version: int) -> Response:
    """The version's folder as a zip: PEFT files plus lineage, ready for `PeftModel.from_pretrained`."""
    return Response(
        training.adapter_archive(name, version),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}-v{version}.zip"'},
    )


@router.delete("/{name}/versions/{version}", status_code=204, response_class=Response)
def delete_adapter_version(name: str, version: int) -> Response:
    training.delete_adapter(name, version)
    return Response(status_code=204)
