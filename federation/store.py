"""Saved federations: one JSON file each in `federations/`, written atomically under the registry's lock."""

import re
from pathlib import Path

from federation.errors import FederationError
from federation.spec import Federation
from registry.activity import log_event
from registry.errors import CorruptFile, NotFound
from registry.layout import Registry, open_registry
from registry.storage import atomic_write_json, bump_generation, load_each, load_json_cached, locked

_ID = re.compile(r"^fed_\d{8}_\d{6}_[0-9a-f]{4}$")


def _file(registry: Registry, federation_id: str) -> Path:
    if not _ID.match(federation_id or ""):
        raise NotFound(f"{federation_id!r} is not a federation id (they look like fed_20261201_184413_ab12).")
    return registry.federations / f"{federation_id}.json"


def save_federation(federation: Federation, registry: Registry | None = None) -> Federation:
    """Write a new federation file; a second federation with the same name is refused, not overwritten."""
    registry = registry or open_registry()
    path = _file(registry, federation.id)
    with locked(registry.locks, "federations"):
        clash = next(
            (
                f
                for f in list_federations(registry)
                if f.name.casefold() == federation.name.casefold() or f.id == federation.id
            ),
            None,
        )
        if clash is not None:
            raise FederationError(
                f"A federation named {clash.name!r} already exists ({clash.id}). Choose another "
                "name, or delete the old one first."
            )
        atomic_write_json(path, federation.model_dump(mode="json"))
        bump_generation(registry.federations)
    log_event(
        "federation.saved",
        f"Saved federation {federation.label}",
        registry,
        federation=federation.id,
    )
    return federation


def load_federation(federation_id: str, registry: Registry | None = None) -> Federation:
    registry = registry or open_registry()
    path = _file(registry, federation_id)
    if not path.is_file():
        raise NotFound(f"No saved federation {federation_id}. It may have been deleted in another session.")
    return _parse(path)


def list_federations(registry: Registry | None = None) -> list[Federation]:
    """Every readable federation, newest first (an unreadable file is skipped: see `broken_federations`)."""
    registry = registry or open_registry()
    found, _ = load_each(sorted(registry.federations.glob("fed_*.json")), _parse)
    return sorted(found, key=lambda f: f.created, reverse=True)


def broken_federations(registry: Registry | None = None) -> list[CorruptFile]:
    """Federation files that cannot be read, for the page to name with a way to remove them."""
    registry = registry or open_registry()
    return load_each(sorted(registry.federations.glob("fed_*.json")), _parse)[1]


def delete_federation(federation_id: str, registry: Registry | None = None) -> None:
    registry = registry or open_registry()
    path = _file(registry, federation_id)
    with locked(registry.locks, "federations"):
        if not path.is_file():
            raise NotFound(f"No saved federation {federation_id}; it may already have been deleted.")
        try:
            federation: Federation | None = _parse(path)
        except CorruptFile:
            federation = None  # an unreadable file can still be deleted: that is how a broken one is removed
        path.unlink()
        bump_generation(registry.federations)
    label = federation.name if federation is not None else federation_id
    log_event("federation.deleted", f"Deleted federation {label}", registry, federation=federation_id)


def _parse(path: Path) -> Federation:
    fix = f"Restore it from a backup, or remove the file to drop federation {path.stem}."
    federation = load_json_cached(path, Federation.model_validate, fix)
    if federation is None:
        raise NotFound(f"No saved federation {path.stem}. It may have been deleted in another session.")
    return federation
