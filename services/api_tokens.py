"""API tokens for the pages, the HTTP API and `make api-token`: anyone signed in manages their own tokens, an admin
manages everyone's. A token acts with its user's role (registry.api_tokens); every create and revoke is audited.

CLI (runs as the local admin, like `make admin`):
    python -m services.api_tokens create USERNAME --name "nightly retrain"   # prints the token once
    python -m services.api_tokens list [USERNAME]
    python -m services.api_tokens revoke TOKEN_ID
"""

import argparse
import sys

from registry import api_tokens as _tokens
from registry import audit
from registry.access import Actor, Role, acting_user, allowed
from registry.api_tokens import PREFIX, ApiToken, has_tokens, token_actor
from registry.errors import ConsoleError, Forbidden

__all__ = ["PREFIX", "ApiToken", "create_token", "has_tokens", "list_tokens", "revoke_token", "token_actor"]


def _may_manage(username: str, what: str) -> Actor:
    actor = acting_user()
    if actor is None or not (allowed(actor, Role.ADMIN) or actor.username.casefold() == username.casefold()):
        who = actor.username if actor else "nobody"
        if actor is not None:
            audit.record(actor.username, actor.role.value, f"api_tokens.{what}", username, "denied", "not own token")
        raise Forbidden(f"{who} may not {what} API tokens of {username}: only their own (admins: anyone's).")
    return actor


def create_token(username: str, name: str) -> tuple[str, ApiToken]:
    """A new token for `username` (yourself, or anyone if you are an admin); the token is returned once."""
    actor = _may_manage(username, "create")
    token, record = _tokens.create_token(username, name)
    audit.record(actor.username, actor.role.value, "api_tokens.create", record.username, "ok", f"token {record.id}")
    return token, record


def list_tokens(username: str | None = None) -> list[ApiToken]:
    """Your tokens; an admin sees everyone's (or one user's)."""
    actor = acting_user()
    if actor is None:
        raise Forbidden("Sign in to see API tokens.")
    if allowed(actor, Role.ADMIN):
        return _tokens.list_tokens(username)
    if username is not None and username.casefold() != actor.username.casefold():
        raise Forbidden(f"{actor.username} may not list the API tokens of {username}: only their own.")
    return _tokens.list_tokens(actor.username)


def revoke_token(token_id: str) -> ApiToken:
    record = _tokens.get_token(token_id)
    actor = _may_manage(record.username, "revoke")
    _tokens.revoke_token(token_id)
    audit.record(actor.username, actor.role.value, "api_tokens.revoke", record.username, "ok", f"token {record.id}")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.api_tokens", description="Manage HTTP API tokens.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a token for a user and print it (shown once)")
    create.add_argument("username")
    create.add_argument("--name", required=True, help="what the token is for, e.g. 'nightly retrain'")
    listing = commands.add_parser("list", help="list tokens (never the tokens themselves)")
    listing.add_argument("username", nargs="?")
    revoke = commands.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id")
    args = parser.parse_args(argv)
    try:
        if args.command == "create":
            token, record = create_token(args.username, args.name)
            print(f"Token {record.id} for {record.username} ({record.name}). Copy it now, it is not shown again:")
            print(token)
        elif args.command == "list":
            for record in list_tokens(args.username):
                used = f"{record.last_used:%Y-%m-%d %H:%M}" if record.last_used else "never"
                print(f"{record.id}  {record.username}  {record.name}  created {record.created:%Y-%m-%d %H:%M}  "
                      f"last used {used}")  # fmt: skip
        else:
            record = revoke_token(args.token_id)
            print(f"Revoked token {record.id} of {record.username} ({record.name}).")
        return 0
    except ConsoleError as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
