"""Unreadable registry files, area by area: lists skip them and pages name them with a way to repair or remove.

One corrupt file (a truncated state.json, a hand-edited meta.json) then costs one item, never a whole page.
"""

from typing import Literal

from federation.store import broken_federations
from registry.datasets import broken_datasets
from registry.errors import CorruptFile
from registry.layout import open_registry
from registry.mappings import list_mappings
from services.runtime import job_manager
from training.adapters import broken_adapters

Area = Literal["datasets", "jobs", "adapters", "federations", "mappings"]
AREAS: tuple[Area, ...] = ("datasets", "jobs", "adapters", "federations", "mappings")

__all__ = ["AREAS", "Area", "CorruptFile", "broken_files"]


def broken_files(*areas: Area) -> list[CorruptFile]:
    """The unreadable files of the given areas (all of them when none is given)."""
    found: list[CorruptFile] = []
    for area in areas or AREAS:
        if area == "datasets":
            found += broken_datasets()
        elif area == "jobs":
            found += job_manager().broken_jobs()
        elif area == "adapters":
            found += broken_adapters()
        elif area == "federations":
            found += broken_federations()
        elif area == "mappings":
            folder = open_registry().mappings
            found += [
                CorruptFile(folder / f"{m.slug}.yaml", m.problem, "Fix it on the Schema Mappings page or remove it.")
                for m in list_mappings()
                if m.problem
            ]
        else:
            raise ValueError(f"Unknown area {area!r}")
    return found
