"""The audit trail: every change, login and refusal as one line of a hash chain in `audit.jsonl`.

Each entry carries the SHA-256 of the entry before it (`prev`) and its own hash over its canonical JSON, so an
edited line breaks its own hash and a removed line breaks the next entry's `prev`. `verify()` walks the chain and
names the first line where it breaks. Anyone who can rewrite the whole file can rewrite the whole chain; the hash
of the newest entry (shown with the verification) is what to keep elsewhere to detect that too.
"""

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from registry.layout import Registry, open_registry
from registry.storage import append_line, locked

GENESIS = "0" * 64
Outcome = Literal["ok", "denied", "failed"]


class AuditEntry(BaseModel):
    """Who did what to which target, when, and how it ended."""

    seq: int
    ts: datetime
    user: str
    role: str
    action: str
    target: str = ""
    outcome: Outcome
    detail: str = ""
    prev: str = Field(description="Hash of the entry before this one (GENESIS for the first).")
    hash: str = Field(description="SHA-256 of this entry's canonical JSON without the hash itself.")


class AuditCheck(BaseModel):
    """The result of walking the chain: `ok`, how many entries, and where it first breaks."""

    ok: bool
    entries: int
    head: str
    problems: list[str]


def _digest(payload: dict[str, Any]) -> str:
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def record(
    user: str,
    role: str,
    action: str,
    target: str = "",
    outcome: Outcome = "ok",
    detail: str = "",
    registry: Registry | None = None,
) -> AuditEntry:
    """Append one entry under the audit lock (one writer at a time across processes, so the chain stays linear)."""
    registry = registry or open_registry()
    with locked(registry.locks, "audit"):
        last = _last_line(registry)
        prev, seq = (GENESIS, 1) if last is None else (last.get("hash", ""), int(last.get("seq", 0)) + 1)
        payload = {
            "seq": seq,
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "user": user,
            "role": role,
            "action": action,
            "target": target[:500],
            "outcome": outcome,
            "detail": detail[:1000],
            "prev": prev,
        }
        payload["hash"] = _digest(payload)
        append_line(registry.audit_log, json.dumps(payload, ensure_ascii=False))
    return AuditEntry.model_validate(payload)


def entries(registry: Registry | None = None) -> list[AuditEntry]:
    """Every readable entry, oldest first (unreadable lines are what `verify` reports)."""
    found = []
    for _, line in _lines(registry or open_registry()):
        try:
            found.append(AuditEntry.model_validate_json(line))
        except ValueError:
            continue
    return found


def verify(registry: Registry | None = None) -> AuditCheck:
    """Walk the chain: each line must parse, hash to its own `hash`, link to the previous one and number on."""
    problems: list[str] = []
    prev, expected_seq, count = GENESIS, 1, 0
    for number, line in _lines(registry or open_registry()):
        count += 1
        try:
            payload = json.loads(line)
            claimed = payload.pop("hash")
        except (ValueError, KeyError, AttributeError):
            problems.append(f"line {number}: not an audit entry (edited or damaged).")
            prev = ""
            continue
        if _digest(payload) != claimed:
            problems.append(f"line {number} (entry {payload.get('seq')}): its content was edited (hash mismatch).")
        if payload.get("prev") != prev:
            problems.append(
                f"line {number} (entry {payload.get('seq')}): does not follow the entry before it "
                "(an entry was removed, inserted or reordered)."
            )
        if payload.get("seq") != expected_seq:
            problems.append(f"line {number}: entry number {payload.get('seq')} where {expected_seq} was expected.")
        prev, expected_seq = claimed, (payload.get("seq") or expected_seq) + 1
    return AuditCheck(ok=not problems, entries=count, head=prev, problems=problems)


def _lines(registry: Registry) -> Iterator[tuple[int, str]]:
    path = registry.audit_log
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                yield number, line


def _last_line(registry: Registry) -> dict[str, Any] | None:
    path = registry.audit_log
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 64 * 1024))
        tail = handle.read().splitlines()
    for raw in reversed(tail):
        if raw.strip():
            try:
                return json.loads(raw)
            except ValueError:
                return {"hash": "", "seq": 0}  # a damaged last line: the chain goes on, verify reports the damage
    return None
