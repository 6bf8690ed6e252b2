"""Federations: compose adapters over one base model, save, list, read, run once and delete."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.pagination import Page, Paging, page_of, paging
from services import federation


class FederationRequest(BaseModel):
    """The Federation page's composer: adapters ("name" or "name@v2") in order, with weights or templates."""

    name: str
    adapters: list[str] = Field(min_length=1)
    method: str = "additive"
    weights: list[float] | None = None
    templates: list[str | None] | None = None
    base_model: str | None = None
    combination: str = "cat"
    merged: bool = False
    routing: str = "top"


class TestRequest(BaseModel):
    prompt: str
    settings: dict[str, Any] = Field(default_factory=dict, description="GenerationSettings fields.")


router = APIRouter(prefix="/federations", tags=["federations"])


@router.get("")
def list_federations(page: Annotated[Paging, Depends(paging)]) -> Page[federation.Federation]:
    return page_of(federation.list_federations(), page)


@router.post("", status_code=201)
def save_federation(request: FederationRequest) -> federation.Federation:
    """Compose and save; an impossible composition or a taken name writes nothing."""
    composed = federation.compose_federation(
        base_model=request.base_model,
        method=request.method,
        adapters=request.adapters,
        weights=request.weights,
        templates=request.templates,
        name=request.name,
        combination=request.combination,
        merged=request.merged,
        routing=request.routing,
    )
    return federation.save_federation(composed)


@router.get("/{federation_id}")
def get_federation(federation_id: str) -> federation.Federation:
    return federation.load_federation(federation_id)


@router.post("/{federation_id}/test")
def test_federation(federation_id: str, request: TestRequest) -> federation.FederationResult:
    """Answer one prompt with the saved federation (for a chat-style API, use /v1/chat/completions)."""
    return federation.test_federation(federation_id, request.prompt, **request.settings)


@router.delete("/{federation_id}", status_code=204, response_class=Response)
def delete_federation(federation_id: str) -> Response:
    federation.delete_federation(federation_id)
    return Response(status_code=204)
