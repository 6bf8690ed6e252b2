"""Accounts, sign-in, roles and the audit trail, for the pages, `make admin`, `make audit-verify` and the API.

Sign-in is needed when it matters: a console on a loopback address with no accounts is one practitioner's own
machine and stays open (everyone acts as the local admin); once an account exists, or when the server listens on
any other address, every page needs a signed-in user, and a server on another address refuses to start until an
admin exists. Roles are enforced by `requires` on the service calls themselves (registry.access).
"""

import argparse
import getpass
import ipaddress
import sys

from registry import access as _access
from registry import audit
from registry.access import (
    LOCAL,
    MIN_PASSWORD,
    ROLE_HELP,
    Actor,
    AuthError,
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
    requires,
    session_actor,
    set_acting_user,
    set_default_user,
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
    "Actor",
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
    "password_problems",
    "requires",
    "session_actor",
    "set_acting_user",
    "set_default_user",
    "set_role",
    "signup",
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
