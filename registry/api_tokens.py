"""Per-user API tokens: a script or a nightly job calls the HTTP API as one console user, with that user's role.

A token is `rmn_<id>_<secret>`: `id` names it in lists and audit entries, `secret` is 32 random bytes. Only the
SHA-256 of the whole token is stored (`access/api_tokens.json`, atomic writes under a lock), so the token is
shown once, when it is made, and a copy of the registry does not hand out access. A random 256-bit secret needs
no slow hash: nobody can guess it, so SHA-256 is the usual choice (a password needs argon2 because people pick
guessable ones). The role is read from the user's account at every request, so a role change or a deleted account
applies at once; a revoked token is gone.
"""

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from registry.access import Actor, list_users
from registry.errors import ConsoleError, NotFound
from registry.layout import Registry, open_registry
from registry.storage import atomic_write_json, locked, parse_checked, read_json

PREFIX = "rmn_"
TOKEN_RE = re.compile(r"^rmn_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")
NAME_MAX = 64
TOUCH_EVERY = timedelta(minutes=1)


class ApiToken(BaseModel):
    """A token's record; `sha256` is the hash of the whole token, never the token itself."""

    id: str
    username: str
    name: str = Field(description="What the token is for, e.g. 'nightly retrain'.")
    created: datetime
    last_used: datetime | None = None
    sha256: str


class _Store(BaseModel):
    tokens: dict[str, ApiToken] = Field(default_factory=dict)


def _path(registry: Registry):
    return registry.access / "api_tokens.json"


def _load(registry: Registry) -> _Store:
    path = _path(registry)
    if not path.exists():
        return _Store()
    fix = f"Restore it from a backup, or move it away (every API token stops working) ('{path}')."
    return parse_checked(path, _Store.model_validate, read_json(path, fix), fix)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(username: str, name: str, registry: Registry | None = None) -> tuple[str, ApiToken]:
    """A new token for an existing user; returns the token (shown once) and its record."""
    registry = registry or open_registry()
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX or any(ord(c) < 32 for c in name):
        raise ConsoleError(
            f"Name the token (1-{NAME_MAX} characters, e.g. 'nightly retrain') so you can tell it apart."
        )
    user = next((u for u in list_users(registry) if u.username.casefold() == str(username).casefold()), None)
    if user is None:
        raise NotFound(f"No user named {username!r}: a token acts as an existing account.")
    with locked(registry.locks, "api_tokens"):
        store = _load(registry)
        token_id = secrets.token_hex(4)
        while token_id in store.tokens:
            token_id = secrets.token_hex(4)
        token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        record = ApiToken(
            id=token_id, username=user.username, name=name, created=datetime.now(UTC), sha256=_digest(token)
        )
        store.tokens[token_id] = record
        atomic_write_json(_path(registry), store.model_dump(mode="json"))
    return token, record


def list_tokens(username: str | None = None, registry: Registry | None = None) -> list[ApiToken]:
    """Every token (or one user's), newest first."""
    tokens = _load(registry or open_registry()).tokens.values()
    chosen = [t for t in tokens if username is None or t.username.casefold() == username.casefold()]
    return sorted(chosen, key=lambda t: t.created, reverse=True)


def get_token(token_id: str, registry: Registry | None = None) -> ApiToken:
    record = _load(registry or open_registry()).tokens.get(str(token_id))
    if record is None:
        raise NotFound(f"No API token {token_id!r} (it may have been revoked).")
    return record


def revoke_token(token_id: str, registry: Registry | None = None) -> ApiToken:
    registry = registry or open_registry()
    with locked(registry.locks, "api_tokens"):
        store = _load(registry)
        record = store.tokens.pop(str(token_id), None)
        if record is None:
            raise NotFound(f"No API token {token_id!r} (it may have been revoked already).")
        atomic_write_json(_path(registry), store.model_dump(mode="json"))
    return record


def has_tokens(registry: Registry | None = None) -> bool:
    return bool(_load(registry or open_registry()).tokens)


def token_actor(token: str | None, registry: Registry | None = None) -> tuple[Actor, ApiToken] | None:
    """The user a token acts as (its role read now) and its record; None for an unknown, revoked or malformed
    token, or one whose user was deleted. Notes the use at most once a minute."""
    if not isinstance(token, str) or len(token) > 128 or not (match := TOKEN_RE.match(token)):
        return None
    registry = registry or open_registry()
    record = _load(registry).tokens.get(match.group(1))
    if record is None or not hmac.compare_digest(record.sha256, _digest(token)):
        return None
    user = next((u for u in list_users(registry) if u.username == record.username), None)
    if user is None:
        return None
    now = datetime.now(UTC)
    if record.last_used is None or now - record.last_used > TOUCH_EVERY:
        with locked(registry.locks, "api_tokens"):
            store = _load(registry)
            if (live := store.tokens.get(record.id)) is not None:
                live.last_used = now
                atomic_write_json(_path(registry), store.model_dump(mode="json"))
    return Actor(username=user.username, role=user.role), record
