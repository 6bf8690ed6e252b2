"""Counts for the Home cards, read straight from the registry so they are never stale."""

from pydantic import BaseModel

from registry.activity import recent_activity
from registry.datasets import list_datasets
from registry.layout import Registry, open_registry
from registry.mappings import list_mappings

__all__ = ["Overview", "recent_activity", "registry_overview"]


class Overview(BaseModel):
    datasets: int
    examples: int
    mappings: int
    active_mappings: int
    adapters: int
    jobs: int
    federations: int


def registry_overview(registry: Registry | None = None) -> Overview:
    registry = registry or open_registry()
    records = list_datasets(registry=registry)
    mappings = list_mappings(registry=registry)
    return Overview(
        datasets=len(records),
        examples=sum(r.rows for r in records),
        mappings=len(mappings),
        active_mappings=sum(m.status == "active" for m in mappings),
        adapters=sum(1 for p in registry.adapters.iterdir() if p.is_dir()),
        jobs=sum(1 for p in registry.jobs.iterdir() if p.is_dir()),
        federations=sum(1 for _ in registry.federations.glob("fed_*.json")),
    )
