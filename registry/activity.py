"""The activity log: one JSON line per registry change, shown on Home and kept for audit."""

import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from registry.layout import Registry, open_registry
from registry.storage import append_line, locked


def log_event(kind: str, message: str, registry: Registry | None = None, **details: Any) -> None:
    registry = registry or open_registry()
    entry = {"ts": datetime.now(UTC).isoformat(timespec="seconds"), "kind": kind, "message": message, **details}
    with locked(registry.locks, "activity"):
        append_line(registry.activity_log, json.dumps(entry, ensure_ascii=False, default=str))


def recent_activity(limit: int = 20, registry: Registry | None = None) -> list[dict[str, Any]]:
    """Newest first; reads only the tail so a long log stays cheap."""
    registry = registry or open_registry()
    path = registry.activity_log
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 256 * 1024))
        tail = handle.read().decode("utf-8", errors="replace").splitlines()
    entries = []
    for line in reversed(tail):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
        if len(entries) >= limit:
            break
    return entries


def read_activity(
    *,
    kinds: Collection[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str = "",
    registry: Registry | None = None,
) -> list[dict[str, Any]]:
    """Every event that matches, newest first: kind (or its area, e.g. 'job' for 'job.completed') in `kinds`,
    time in [since, until), `text` anywhere in it.

    A line that is not valid JSON (a torn write, a hand edit) is skipped, never fatal.
    """
    registry = registry or open_registry()
    path = registry.activity_log
    if not path.exists():
        return []
    needle = text.strip().casefold()
    wanted = set(kinds) if kinds else None
    entries = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
                stamp = datetime.fromisoformat(entry["ts"])
            except (ValueError, KeyError, TypeError):
                continue
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=UTC)
            kind = str(entry.get("kind", ""))
            if wanted is not None and kind not in wanted and kind.split(".")[0] not in wanted:
                continue
            if (since and stamp < since) or (until and stamp >= until):
                continue
            if needle and needle not in line.casefold():
                continue
            entries.append(entry)
    entries.reverse()
    return entries
