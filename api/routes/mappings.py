"""Mappings: the retailer -> RMIS schema mappings, as JSON or as their YAML file."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from api.pagination import Page, Paging, page_of, paging
from services import mappings

router = APIRouter(prefix="/mappings", tags=["mappings"])


@router.get("")
def list_mappings(page: Annotated[Paging, Depends(paging)]) -> Page[mappings.MappingSummary]:
    return page_of(mappings.list_mappings(), page)


@router.get("/{retailer}")
def get_mapping(retailer: str) -> mappings.Mapping:
    return mappings.get_mapping(retailer)


@router.get("/{retailer}/yaml", response_class=PlainTextResponse)
def get_mapping_yaml(retailer: str, version: str | None = None) -> str:
    """The stored file of the current version, or of an archived one (`version=0.2.0`)."""
    return mappings.get_mapping_yaml(retailer, version)


@router.get("/{retailer}/history")
def mapping_history(retailer: str) -> list[str]:
    return mappings.mapping_history(retailer)
