"""Accounts, sign-in, roles and the audit trail, for the pages, `make admin`, `make audit-verify` and the API.

Sign-in is needed when it matters: a console on a loopback address with no accounts is one practitioner's own
machine and stays open (everyone acts as the local admin); once an account exists, or when the server listens on
any other address, every page needs a signed-in user, and a server on another address refuses to start until an
admin exists. Roles are enforced by `requires` on the service calls themselves (registry.access).
"""

import argparse
import getpass
import hashlib
import ipaddress
import secrets
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from registry import access as _access
from registry import audit
from registry.access import (
    LOCAL,
    MIN_PASSWORD,
    ROLE_HELP,
    SESSION_IDLE,
    Actor,
    AuthError,
    Identity,
    Role,
    User,
    acting_as,
    acting_user,
    allowed,
    has_admin,
    has_users,
    list_users,
    login,
    logout,
    password_problems,
    refusal,
    required_role,
    requires,
    session_actor,
    set_acting_user,
    set_default_user,
    sso_default_role,
)
from registry.audit import AuditCheck, AuditEntry
from registry.errors import ConsoleError
from registry.spreadsheet import write_csv

__all__ = [
    "LOCAL",
    "MIN_PASSWORD",
    "ConsoleError",
    "audit_csv",
    "ROLE_HELP",
    "SESSION_IDLE",
    "Actor",
    "Identity",
    "AuditCheck",
    "AuditEntry",
    "AuthError",
    "Role",
    "User",
    "acting_as",
    "acting_user",
    "allowed",
    "audit_entries",
    "auth_required",
    "check_can_serve",
    "create_first_admin",
    "create_user",
    "delete_user",
    "has_admin",
    "has_users",
    "is_loopback",
    "list_accounts",
    "login",
    "logout",
    "may",
    "password_problems",
    "refusal",
    "required_role",
    "requires",
    "session_actor",
    "set_acting_user",
    "set_default_user",
    "set_role",
    "set_sso_default_role",
    "signup",
    "sso_actor",
    "sso_default_role",
    "sso_sign_in",
    "sso_sign_out",
    "redeem_handoff",
    "session_handoff",
    "unlock_user",
    "verify_audit",
]


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8, ::1 and 'localhost'; an empty address means every interface, which is not loopback."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_required(address: str | None) -> bool:
    """Off only for a console on loopback with no accounts (a practitioner on their own machine)."""
    return not (is_loopback(address) and not has_users())


def check_can_serve(address: str | None) -> None:
    """A server reachable from other machines needs an admin account first."""
    if not is_loopback(address) and not has_admin():
        raise ConsoleError(
            f"This console listens on {address or 'every interface'}, which other machines can reach, and has no "
            "admin account yet, so it will not serve. Run `make admin` (or start it on 127.0.0.1 and create the "
            "admin on the Users page), then start it again."
        )


def signup(username: str, email: str, password: str, confirm: str) -> User:
    """Anyone may sign up; a new account is a viewer until an admin gives it a role (the first account, made on an
    open console, is the admin)."""
    role = Role.VIEWER if has_users() else Role.ADMIN
    user = _access.create_user(username, password, role, email=email, confirm=confirm)
    audit.record(user.username, user.role.value, "access.signup", user.username, "ok")
    return user


def create_first_admin(username: str, password: str, email: str = "", confirm: str | None = None) -> User:
    """`make admin` and the first-run form: only while no admin exists."""
    if has_admin():
        raise AuthError("An admin exists already; sign in as that admin to add users.")
    user = _access.create_user(username, password, Role.ADMIN, email=email, confirm=confirm)
    audit.record(user.username, "admin", "access.first_admin", user.username, "ok")
    return user


create_user = requires(Role.ADMIN, "access.create_user")(_access.create_user)
set_role = requires(Role.ADMIN, "access.set_role")(_access.set_role)
delete_user = requires(Role.ADMIN, "access.delete_user")(_access.delete_user)
unlock_user = requires(Role.ADMIN, "access.unlock_user")(_access.unlock_user)


set_sso_default_role = requires(Role.ADMIN, "access.set_sso_default_role")(_access.set_sso_default_role)


def identity_of(claims: Mapping[str, Any]) -> Identity:
    """The identity in an OIDC provider's claims (`st.user` after `st.login`): issuer and subject at least."""
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not isinstance(subject, str) or not issuer or not subject:
        raise AuthError("The identity provider sent no issuer or subject for this sign-in; ask an admin to check it.")
    text = {k: v if isinstance(v, str) else "" for k in ("email", "preferred_username", "name") if (v := claims.get(k))}
    try:
        return Identity(issuer=issuer, subject=subject, email_verified=claims.get("email_verified") is True, **text)
    except ValueError as error:
        raise AuthError(f"The identity provider's claims are not usable here: {error}") from None


def sso_actor(claims: Mapping[str, Any]) -> Actor | None:
    """Who a single-sign-on browser acts as on this run: its account's current role, or None before enrolment."""
    user = _access.sso_account(identity_of(claims))
    return None if user is None else Actor(username=user.username, role=user.role)


def sso_sign_in(claims: Mapping[str, Any]) -> Actor:
    """A browser's first run after `st.login`: link or create its account (first admin rule, then the admins'
    default role for single sign-on) and record the sign-in."""
    identity = identity_of(claims)
    try:
        user, how = _access.sso_enrol(identity)
    except AuthError as error:
        audit.record(identity.subject[:64], "-", "access.login", identity.email[:64], "failed", f"sso: {error}")
        raise
    if how != "existing":
        audit.record(user.username, user.role.value, f"access.sso_{'signup' if how == 'created' else 'link'}",
                     user.username, "ok", identity.issuer)  # fmt: skip
    audit.record(
        user.username, user.role.value, "access.login", user.username, "ok", f"single sign-on {identity.issuer}"
    )
    return Actor(username=user.username, role=user.role)


HANDOFF_LIFE = timedelta(seconds=60)
_handoffs: dict[str, tuple[str, datetime]] = {}
_handoffs_lock = threading.Lock()


def session_handoff(token: str) -> str:
    """A one-time code, valid for a minute, that the browser trades at the server's session route for the HttpOnly
    cookie holding `token` (so the token itself never passes through a page script or a URL)."""
    code = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with _handoffs_lock:
        for key in [k for k, (_, expires) in _handoffs.items() if expires < now]:
            del _handoffs[key]
        _handoffs[hashlib.sha256(code.encode()).hexdigest()] = (token, now + HANDOFF_LIFE)
    return code


def redeem_handoff(code: str | None) -> str | None:
    """The session token of a live one-time code (which is spent); None for an unknown, spent or expired code, or
    one whose session has ended meanwhile."""
    if not isinstance(code, str) or not code or len(code) > 128:
        return None
    with _handoffs_lock:
        entry = _handoffs.pop(hashlib.sha256(code.encode()).hexdigest(), None)
    if entry is None or entry[1] < datetime.now(UTC):
        return None
    return entry[0] if session_actor(entry[0]) is not None else None


def sso_sign_out(actor: Actor) -> None:
    """Record a single-sign-on user's sign-out (Streamlit's /auth/logout then drops its identity cookie)."""
    audit.record(actor.username, actor.role.value, "access.logout", actor.username, "ok", "single sign-on")


def may(service: Callable[..., Any]) -> bool:
    """Whether the acting user may call `service`, a call guarded by `requires` (pages ask `refusal` with their
    session's user, so a write control shows exactly when the service would accept its call)."""
    return refusal(service, acting_user()) is None


def list_accounts() -> list[User]:
    """Every account (admins only: the list holds e-mail addresses)."""
    if not allowed(acting_user(), Role.ADMIN):
        raise _forbidden("see the user list")
    return list_users()


def audit_entries() -> list[AuditEntry]:
    if not allowed(acting_user(), Role.ADMIN):
        raise _forbidden("read the audit trail")
    return audit.entries()


def audit_csv(entries: list[AuditEntry]) -> bytes:
    """The entries as spreadsheet-safe CSV (formula cells made inert, every cell quoted)."""
    columns = ["seq", "ts", "user", "role", "action", "target", "outcome", "detail", "prev", "hash"]
    return write_csv(columns, (entry.model_dump(mode="json") for entry in entries))


def verify_audit() -> AuditCheck:
    """Walk the audit chain (anyone may check it; it reveals no entry)."""
    return audit.verify()


def _forbidden(what: str) -> ConsoleError:
    from registry.errors import Forbidden

    actor = acting_user()
    return Forbidden(f"{actor.username if actor else 'nobody'} may not {what}: this needs the admin role.")


def main(argv: list[str] | None = None) -> int:
    """`python -m services.access admin` (make admin), `... audit-verify` (make audit-verify) and `... check-serve
    HOST` (make run refuses a non-loopback HOST until an admin exists)."""
    parser = argparse.ArgumentParser(prog="python -m services.access")
    commands = parser.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("admin", help="create the first admin account")
    admin.add_argument("--username", default=None)
    admin.add_argument("--email", default="")
    commands.add_parser("audit-verify", help="check the audit trail's hash chain")
    serve = commands.add_parser("check-serve", help="refuse (exit 2) to serve on HOST without an admin account")
    serve.add_argument("host")
    args = parser.parse_args(argv)
    try:
        if args.command == "check-serve":
            check_can_serve(args.host)
            return 0
        if args.command == "admin":
            username = args.username or input("Admin username: ").strip()
            password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
            confirm = getpass.getpass("Confirm password: ") if sys.stdin.isatty() else password
            user = create_first_admin(username, password, args.email, confirm)
            print(f"Created admin {user.username}. Sign in on the console's login page.")
            return 0
        check = verify_audit()
        if check.ok:
            print(f"Audit trail intact: {check.entries} entries, newest hash {check.head}.")
            return 0
        print(f"Audit trail BROKEN ({check.entries} entries):")
        for problem in check.problems:
            print(f"  {problem}")
        return 1
    except ConsoleError as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
