"""Models: base models, every adapter version and published packages, as the Models page lists them
(services.models). A model's id is its name; an adapter version's is `name@vN` (and `name` alone is its latest).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from api.pagination import Page, Paging, page_of, paging
from services import models
from services.errors import NotFound


class Model(models.ModelEntry):
    id: str = Field(description="`name` for a base model or package, `name@vN` for an adapter version.")


class ModelDetail(Model):
    versions: list[Model] = Field(default_factory=list, description="An adapter's versions, newest first.")
    evaluations: list[dict[str, Any]] = Field(default_factory=list, description="Its evaluation runs, newest first.")


router = APIRouter(prefix="/models", tags=["models"])


def _model(entry: models.ModelEntry) -> Model:
    model_id = f"{entry.name}@v{entry.version}" if entry.kind == "adapter" else entry.name
    return Model(id=model_id, **entry.model_dump())


@router.get("")
def list_models(
    page: Annotated[Paging, Depends(paging)],
    kind: models.Kind | None = None,
    search: str = "",
    tag: Annotated[list[str] | None, Query(description="Only models with every one of these tags.")] = None,
    latest: Annotated[bool, Query(description="Only each adapter's latest version.")] = False,
) -> Page[Model]:
    """Base models, then adapter versions (newest first), then packages."""
    entries = models.list_models(kind, search, tag)
    return page_of([_model(e) for e in entries if e.latest or not latest], page)


@router.get("/{model_id:path}")
def get_model(model_id: str) -> ModelDetail:
    """One model: a base model or package by name, an adapter's latest version by `name`, one by `name@v2`."""
    name, _, version = model_id.partition("@")
    digits = version.removeprefix("v")
    if version and not digits.isdigit():
        raise NotFound(f"{model_id!r}: the part after '@' must be a version like v2.")
    entry = models.get_model(name, version=int(digits) if version else None)
    versions = (
        [_model(e) for e in models.list_models("adapter") if e.name == entry.name] if entry.kind == "adapter" else []
    )
    return ModelDetail(**_model(entry).model_dump(), versions=versions, evaluations=models.model_evaluations(entry))
