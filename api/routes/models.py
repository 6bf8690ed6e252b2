"""Models: the base models a job can train on and the adapters trained on them, in one list.

An adapter's id is its name (latest version) or `name@v2`; a base model's id is its model id.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from api.pagination import Page, Paging, page_of, paging
from services import training
from services.errors import NotFound


class ModelEntry(BaseModel):
    id: str
    kind: Literal["base", "adapter"]
    base_model: str
    ready: bool = True
    adapter: training.AdapterRecord | None = None
    base: training.BaseModelInfo | None = None


class ModelDetail(ModelEntry):
    versions: list[training.AdapterRecord] = []


router = APIRouter(prefix="/models", tags=["models"])


def _entries() -> list[ModelEntry]:
    bases = [
        ModelEntry(id=b.id, kind="base", base_model=b.id, ready=b.ready, base=b) for b in training.list_base_models()
    ]
    adapters = [_adapter_entry(a) for a in training.list_adapters()]
    return bases + adapters


def _adapter_entry(record: training.AdapterRecord) -> ModelEntry:
    return ModelEntry(id=record.name, kind="adapter", base_model=str(record.base_model.get("id", "")), adapter=record)


@router.get("")
def list_models(
    page: Annotated[Paging, Depends(paging)], kind: Literal["base", "adapter"] | None = None
) -> Page[ModelEntry]:
    """Base models first, then adapters newest first."""
    return page_of([m for m in _entries() if kind is None or m.kind == kind], page)


@router.get("/{model_id:path}")
def get_model(model_id: str) -> ModelDetail:
    """One base model, or one adapter with all its versions (`name@v2` picks the version shown)."""
    base = next((b for b in training.list_base_models() if b.id == model_id), None)
    if base is not None:
        return ModelDetail(id=base.id, kind="base", base_model=base.id, ready=base.ready, base=base)
    name, _, version = model_id.partition("@")
    number = int(version.removeprefix("v")) if version.removeprefix("v").isdigit() else None
    if version and number is None:
        raise NotFound(f"{model_id!r}: the part after '@' must be a version like v2.")
    record = training.get_adapter(name, number)
    return ModelDetail(**_adapter_entry(record).model_dump(), versions=training.adapter_versions(name))
