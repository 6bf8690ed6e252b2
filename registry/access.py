"""Who may do what: users with roles, argon2 password hashes, sessions, lockout, and the acting user.

- Roles, lowest first: viewer (read, run inference), practitioner (everything but users and settings), admin.
- The acting user lives in a context variable: the app sets it for each script run from the signed-in session
  (`acting_as`), the HTTP API will set it from a token, and scripts run as the local user. Every service call that
  changes something is wrapped in `requires(role)`, which refuses a lower role with `Forbidden` and writes the
  attempt, its target and its outcome to the audit trail. So a page that forgets to hide a button still cannot
  write, and neither can a caller that skips the pages.
- When the acting user is unset, `default_user()` answers: the local user (admin) for scripts and for a console
  on loopback with no accounts; nobody (every write refused) for a server that requires sign-in.
"""

import contextvars
import functools
import hashlib
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from inspect import signature
from typing import Any, ParamSpec, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field

from registry import audit
from registry.errors import ConsoleError, Forbidden, InvalidName, NotFound
from registry.layout import Registry, open_registry
from registry.storage import atomic_write_json, locked, parse_checked, read_json

P = ParamSpec("P")
T = TypeVar("T")

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,31}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 256
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
SESSION_IDLE = timedelta(hours=8)
SESSION_MAX = timedelta(days=7)
# argon2id with argon2-cffi's RFC 9106 "low memory" profile: 64 MiB, 3 passes (a memory-hard hash).
_hasher = PasswordHasher()


class Role(StrEnum):
    VIEWER = "viewer"
    PRACTITIONER = "practitioner"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    @property
    def label(self) -> str:
        return {"viewer": "Viewer (team member)", "practitioner": "ML practitioner", "admin": "Admin"}[self.value]


ROLE_HELP = {
    Role.VIEWER: "Reads everything, runs inference in the Playground and on federations; changes nothing.",
    Role.PRACTITIONER: "Uploads and deletes datasets, edits mappings, trains, composes and publishes.",
    Role.ADMIN: "Everything a practitioner does, plus users, roles, settings and the audit trail.",
}


class User(BaseModel):
    """An account; `password_hash` is argon2id (the password itself is never stored)."""

    username: str
    email: str = ""
    role: Role
    password_hash: str
    created: datetime
    failed_logins: int = 0
    locked_until: datetime | None = None
    last_login: datetime | None = None
    sso: str | None = Field(
        default=None, description="'issuer subject' of the single sign-on identity that signs this account in."
    )


class Actor(BaseModel):
    """Who is acting: a signed-in user, the local user, or an API token's owner."""

    model_config = {"frozen": True}

    username: str
    role: Role


LOCAL = Actor(username="local", role=Role.ADMIN)


class Session(BaseModel):
    username: str
    created: datetime
    last_seen: datetime


class Store(BaseModel):
    """`access/users.json`: every account and the live sessions (by the SHA-256 of their token)."""

    users: dict[str, User] = Field(default_factory=dict)
    sessions: dict[str, Session] = Field(default_factory=dict)
    sso_default_role: Role = Field(default=Role.VIEWER, description="The role of an account made by single sign-on.")


# ---- the acting user ---------------------------------------------------------------------------------------------

_acting: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("rmn_acting_user", default=None)
_default: list[Actor | None] = [LOCAL]


def acting_user() -> Actor | None:
    """The user this call acts for (None: nobody, every write is refused)."""
    return _acting.get() or _default[0]


def set_acting_user(actor: Actor | None) -> contextvars.Token:
    return _acting.set(actor)


@contextmanager
def acting_as(actor: Actor | None) -> Iterator[None]:
    token = _acting.set(actor)
    try:
        yield
    finally:
        _acting.reset(token)


def set_default_user(actor: Actor | None) -> None:
    """What an unset acting user means in this process: LOCAL for scripts and an open console, None when the
    server requires sign-in (a code path that forgot to set the user can then read but never write)."""
    _default[0] = actor


def allowed(actor: Actor | None, role: Role) -> bool:
    return actor is not None and actor.role.rank >= role.rank


def required_role(service: Callable[..., Any]) -> Role:
    """The role a guarded service call needs (what `requires` put on it); TypeError for a call that is not guarded,
    so a page cannot ask about a write the services do not check."""
    role = getattr(service, "required_role", None)
    if not isinstance(role, Role):
        raise TypeError(f"{getattr(service, '__qualname__', service)!r} is not a guarded service call (see requires)")
    return role


def refusal(service: Callable[..., Any], actor: Actor | None) -> str | None:
    """Why `actor` may not call the guarded `service`, in words; None when it may. The one rule pages use to hide
    a write control and the services use to refuse the call."""
    role = required_role(service)
    if allowed(actor, role):
        return None
    if actor is None:
        return f"This needs the {role.label} role; sign in first."
    return f"This needs the {role.label} role (yours is {actor.role.label}). Ask an admin to change your role."


def requires(role: Role, action: str | None = None) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Refuse callers below `role` with Forbidden; audit every call (ok, denied or failed) with its target, which is
    the first argument when it is text (a dataset, adapter, job or user name)."""

    def wrap(function: Callable[P, T]) -> Callable[P, T]:
        name = action or f"{function.__module__.rsplit('.', 1)[-1]}.{function.__name__}"
        parameters = [p for p in signature(function).parameters if p != "self"]

        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            actor = acting_user()
            target = _target(args, kwargs, parameters)
            if not allowed(actor, role):
                who = actor.username if actor else "nobody"
                _audit(actor, name, target, "denied", f"needs {role.value}")
                raise Forbidden(
                    f"{who} may not {name.replace('_', ' ')}: this needs the {role.label} role"
                    + (f" (yours is {actor.role.label})." if actor else "; sign in first.")
                    + " Ask an admin to change your role."
                )
            try:
                result = function(*args, **kwargs)
            except Exception as error:
                _audit(actor, name, target, "failed", f"{type(error).__name__}: {error}")
                raise
            _audit(actor, name, target, "ok", _result_detail(result))
            return result

        guarded.required_role = role  # type: ignore[attr-defined]
        guarded.action = name  # type: ignore[attr-defined]
        return guarded

    return wrap


def _target(args: tuple, kwargs: dict, parameters: list[str]) -> str:
    values = list(args)
    if (
        values
        and not isinstance(values[0], (str, int))
        and hasattr(values[0], "__dict__")
        and len(parameters) < len(values)
    ):
        values = values[1:]  # a bound method's self
    first = values[0] if values else (kwargs.get(parameters[0]) if parameters else None)
    if isinstance(first, str):
        return first
    for attribute in ("id", "name", "retailer", "adapter_name"):
        value = getattr(first, attribute, None)
        if isinstance(value, str):
            return value
    return ""


def _result_detail(result: Any) -> str:
    for attribute in ("id", "name"):
        value = getattr(result, attribute, None)
        if isinstance(value, str):
            return f"result {value}"
    return ""


def _audit(actor: Actor | None, action: str, target: str, outcome: audit.Outcome, detail: str = "") -> None:
    audit.record(
        actor.username if actor else "nobody", actor.role.value if actor else "-", action, target, outcome, detail
    )


# ---- accounts ----------------------------------------------------------------------------------------------------


class AuthError(ConsoleError):
    """A sign-in or sign-up the console refuses, said so the person can fix it."""


def _load(registry: Registry) -> Store:
    path = registry.access / "users.json"
    if not path.exists():
        return Store()
    fix = f"Restore it from a backup, or move it away and run `make admin` to start again ('{path}')."
    return parse_checked(path, Store.model_validate, read_json(path, fix), fix)


def _save(registry: Registry, store: Store) -> None:
    atomic_write_json(registry.access / "users.json", store.model_dump(mode="json"))


@contextmanager
def _editing(registry: Registry | None = None) -> Iterator[Store]:
    registry = registry or open_registry()
    with locked(registry.locks, "access"):
        store = _load(registry)
        yield store
        _save(registry, store)


def list_users(registry: Registry | None = None) -> list[User]:
    return sorted(_load(registry or open_registry()).users.values(), key=lambda u: u.created)


def has_users(registry: Registry | None = None) -> bool:
    return bool(_load(registry or open_registry()).users)


def has_admin(registry: Registry | None = None) -> bool:
    return any(u.role == Role.ADMIN for u in _load(registry or open_registry()).users.values())


def password_problems(password: str, username: str = "", email: str = "") -> list[str]:
    """Every rule the password breaks, in words (empty when it is strong enough)."""
    problems = []
    if len(password) < MIN_PASSWORD:
        problems.append(f"at least {MIN_PASSWORD} characters (it has {len(password)})")
    if len(password) > MAX_PASSWORD:
        problems.append(f"at most {MAX_PASSWORD} characters")
    classes = sum(bool(re.search(pattern, password)) for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    if classes < 3:
        problems.append("three of: lower-case letters, upper-case letters, digits, symbols")
    lowered = password.casefold()
    for part in (username, email.split("@")[0]):
        if part and len(part) >= 3 and part.casefold() in lowered:
            problems.append("not contain your username or e-mail name")
            break
    if len(set(password)) < 6:
        problems.append("at least 6 different characters")
    return problems


def create_user(
    username: str,
    password: str,
    role: Role | str,
    email: str = "",
    confirm: str | None = None,
    registry: Registry | None = None,
) -> User:
    """A new account; every refusal says which rule failed. Usernames are unique ignoring case."""
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise InvalidName(
            "The username must be 3-32 characters: letters, digits, '_', '.' or '-', starting with a letter or digit."
        )
    email = (email or "").strip()
    if email and not EMAIL_RE.match(email):
        raise AuthError(f"{email!r} is not an e-mail address (name@example.com).")
    if not isinstance(password, str):
        raise AuthError("The password must be text.")
    if confirm is not None and confirm != password:
        raise AuthError("The two passwords differ: type the same password in both fields.")
    problems = password_problems(password, username, email)
    if problems:
        raise AuthError("The password must have " + "; ".join(problems) + ".")
    try:
        role = Role(role)
    except ValueError:
        raise AuthError(f"Unknown role {role!r}: choose viewer, practitioner or admin.") from None
    hashed = _hasher.hash(password)
    with _editing(registry) as store:
        if any(u.casefold() == username.casefold() for u in store.users):
            raise AuthError(f"The username {username!r} is taken. Choose another, or sign in.")
        if email and any(u.email.casefold() == email.casefold() for u in store.users.values()):
            raise AuthError(f"An account with {email} exists already. Sign in instead.")
        user = User(username=username, email=email, role=role, password_hash=hashed, created=datetime.now(UTC))
        store.users[username] = user
    return user


def set_role(username: str, role: Role | str, registry: Registry | None = None) -> User:
    try:
        role = Role(role)
    except ValueError:
        raise AuthError(f"Unknown role {role!r}: choose viewer, practitioner or admin.") from None
    with _editing(registry) as store:
        user = _find(store, username)
        if user.role == Role.ADMIN and role != Role.ADMIN and _admins(store) == 1:
            raise AuthError(f"{username} is the only admin; make another admin first.")
        user.role = role
    return user


def delete_user(username: str, registry: Registry | None = None) -> None:
    with _editing(registry) as store:
        user = _find(store, username)
        if user.role == Role.ADMIN and _admins(store) == 1:
            raise AuthError(f"{username} is the only admin; make another admin first.")
        del store.users[user.username]
        store.sessions = {k: s for k, s in store.sessions.items() if s.username != user.username}


def unlock_user(username: str, registry: Registry | None = None) -> User:
    with _editing(registry) as store:
        user = _find(store, username)
        user.failed_logins, user.locked_until = 0, None
    return user


def _find(store: Store, username: str) -> User:
    for name, user in store.users.items():
        if name.casefold() == str(username).casefold():
            return user
    raise NotFound(f"No user named {username!r}.")


def _admins(store: Store) -> int:
    return sum(u.role == Role.ADMIN for u in store.users.values())


# ---- sign-in and sessions ----------------------------------------------------------------------------------------


def login(identifier: str, password: str, registry: Registry | None = None) -> tuple[str, Actor]:
    """Check a username (or e-mail) and password; returns a new session token. Wrong credentials never say which
    part was wrong; the account locks for LOCKOUT after MAX_FAILURES failures in a row."""
    registry = registry or open_registry()
    identifier = (identifier or "").strip()
    now = datetime.now(UTC)
    with locked(registry.locks, "access"):
        store = _load(registry)
        user = next(
            (
                u
                for u in store.users.values()
                if identifier and identifier.casefold() in (u.username.casefold(), u.email.casefold())
            ),
            None,
        )
        if user is not None and user.locked_until and user.locked_until > now:
            minutes = max(1, round((user.locked_until - now).total_seconds() / 60))
            audit.record(user.username, user.role.value, "access.login", user.username, "denied", "account locked")
            raise AuthError(
                f"Too many failed sign-ins: this account is locked for {minutes} more minute(s). "
                "Try again later, or ask an admin to unlock it."
            )
        if not _password_ok(user, password):
            detail = "wrong password" if user else "unknown user"
            if user is not None:
                user.failed_logins += 1
                if user.failed_logins >= MAX_FAILURES:
                    user.locked_until = now + LOCKOUT
                    detail += f"; locked for {int(LOCKOUT.total_seconds() // 60)} minutes"
                _save(registry, store)
            audit.record(
                identifier[:64] or "?",
                user.role.value if user else "-",
                "access.login",
                identifier[:64],
                "failed",
                detail,
            )
            left = MAX_FAILURES - user.failed_logins if user else None
            warning = f" {left} attempt(s) left before the account locks." if user and 0 < left < MAX_FAILURES else ""
            if user is not None and user.locked_until and user.locked_until > now:
                raise AuthError(
                    f"Wrong username or password. After {MAX_FAILURES} failures the account is locked for "
                    f"{int(LOCKOUT.total_seconds() // 60)} minutes."
                )
            raise AuthError("Wrong username or password." + warning)
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        user.failed_logins, user.locked_until, user.last_login = 0, None, now
        token = secrets.token_urlsafe(32)
        store.sessions = {k: s for k, s in store.sessions.items() if _live(s, now)}
        store.sessions[_token_key(token)] = Session(username=user.username, created=now, last_seen=now)
        _save(registry, store)
    audit.record(user.username, user.role.value, "access.login", user.username, "ok")
    return token, Actor(username=user.username, role=user.role)


def session_actor(token: str | None, registry: Registry | None = None) -> Actor | None:
    """The user of a live session token (its role read now, so a role change applies at once); None when the
    token is unknown, expired, or its user was removed. Touches the session at most once a minute."""
    if not isinstance(token, str) or not token or len(token) > 512:
        return None
    registry = registry or open_registry()
    now = datetime.now(UTC)
    store = _load(registry)
    session = store.sessions.get(_token_key(token))
    if session is None or not _live(session, now) or session.username not in store.users:
        return None
    if now - session.last_seen > timedelta(minutes=1):
        with _editing(registry) as fresh:
            if (live := fresh.sessions.get(_token_key(token))) is not None:
                live.last_seen = now
    user = store.users[session.username]
    return Actor(username=user.username, role=user.role)


def logout(token: str | None, registry: Registry | None = None) -> None:
    if not isinstance(token, str) or not token:
        return
    registry = registry or open_registry()
    with _editing(registry) as store:
        session = store.sessions.pop(_token_key(token), None)
    if session is not None:
        role = store.users[session.username].role.value if session.username in store.users else "-"
        audit.record(session.username, role, "access.logout", session.username, "ok")


# ---- single sign-on (OIDC) ---------------------------------------------------------------------------------------


class Identity(BaseModel):
    """What an OIDC provider says about the person signing in (the ID token's claims the console uses)."""

    issuer: str = Field(min_length=1, max_length=512)
    subject: str = Field(min_length=1, max_length=512)
    email: str = Field(default="", max_length=254)
    email_verified: bool = False
    preferred_username: str = Field(default="", max_length=254)
    name: str = Field(default="", max_length=254)

    @property
    def key(self) -> str:
        return f"{self.issuer} {self.subject}"


def sso_account(identity: Identity, registry: Registry | None = None) -> User | None:
    """The account this identity signs in as, if it has one (read only: called on every run)."""
    store = _load(registry or open_registry())
    return next((u for u in store.users.values() if u.sso == identity.key), None)


def sso_enrol(identity: Identity, registry: Registry | None = None) -> tuple[User, str]:
    """The account of an identity at its first single sign-on: an existing account with the same e-mail, when the
    provider confirmed the address (linked), or a new one (created) whose role is the admin's default for single
    sign-on, except that the console's first account is its admin. Returns (user, "existing" | "linked" |
    "created"). A taken e-mail the provider did not confirm is refused: linking on it would hand that account to
    whoever typed the address at the provider."""
    with _editing(registry) as store:
        now = datetime.now(UTC)
        if (user := next((u for u in store.users.values() if u.sso == identity.key), None)) is not None:
            user.last_login = now
            return user, "existing"
        email = identity.email.strip()
        same = next((u for u in store.users.values() if email and u.email.casefold() == email.casefold()), None)
        if same is not None:
            if not identity.email_verified or same.sso is not None:
                raise AuthError(
                    f"An account with {email} exists already and the identity provider did not confirm that this "
                    "sign-in owns it. Sign in with that account's password, or ask an admin."
                )
            same.sso, same.last_login = identity.key, now
            return same, "linked"
        role = store.sso_default_role if store.users else Role.ADMIN
        user = User(
            username=_free_username(store, identity),
            email=email if email and EMAIL_RE.match(email) else "",
            role=role,
            password_hash="",  # no password: this account signs in through its provider only
            created=now,
            last_login=now,
            sso=identity.key,
        )
        store.users[user.username] = user
        return user, "created"


def _free_username(store: Store, identity: Identity) -> str:
    """A username from the provider's preferred name, the e-mail's name or the subject, made valid and unique."""
    for wish in (identity.preferred_username, identity.email.split("@")[0], identity.name, identity.subject, "sso"):
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", wish).strip("-_.")[:28]
        if len(base) >= 3:
            break
    else:
        base = "sso-user"
    taken = {name.casefold() for name in store.users}
    candidate, n = base, 1
    while candidate.casefold() in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def sso_default_role(registry: Registry | None = None) -> Role:
    return _load(registry or open_registry()).sso_default_role


def set_sso_default_role(role: Role | str, registry: Registry | None = None) -> Role:
    try:
        role = Role(role)
    except ValueError:
        raise AuthError(f"Unknown role {role!r}: choose viewer, practitioner or admin.") from None
    with _editing(registry) as store:
        store.sso_default_role = role
    return role


def expire_sessions_of(username: str, registry: Registry | None = None) -> None:
    with _editing(registry) as store:
        store.sessions = {k: s for k, s in store.sessions.items() if s.username != username}


def _password_ok(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _dummy_hash(), password or "") and user is not None
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a missing user costs the same time as a wrong password."""
    return _hasher.hash(secrets.token_hex(16))


def _live(session: Session, now: datetime) -> bool:
    return now - session.last_seen < SESSION_IDLE and now - session.created < SESSION_MAX


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
