"""Who may call the API: the console's users, through per-user API tokens, with the console's roles.

`Authorization: Bearer rmn_...` names a token (services.api_tokens); the request then acts as the token's user,
so every service call checks that user's role (a viewer's upload is a 403) and the audit trail names them. A
console with no accounts, called from this machine, stays open as on the pages (the caller acts as the local
admin; an OpenAI client's placeholder key is ignored there). Anything else without a valid token is a 401.
The policy is one FastAPI dependency that `create_app(access=...)` runs before every route.
"""

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import Request

from services.access import LOCAL, AuthError, acting_as, has_users, is_loopback
from services.api_tokens import PREFIX, token_actor

AccessPolicy = Callable[..., Any]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def console_access(request: Request) -> AsyncIterator[None]:
    """The default policy: a valid token acts as its user; an open console answers this machine as the local
    admin; everything else is refused with 401 and how to get a token."""
    token = _bearer(request)
    host = request.client.host if request.client else None
    # A stat of the users file, run here: a hop to a worker thread cost more than the check (bench/openai_overhead.py).
    open_console = is_loopback(host) and not has_users()
    if token and (token.startswith(PREFIX) or not open_console):
        found = await anyio.to_thread.run_sync(token_actor, token)
        if found is None:
            raise AuthError(
                "This API token is unknown or was revoked. Create one on the console's API tokens page "
                "(or `make api-token USERNAME=you NAME=...`) and send it as `Authorization: Bearer <token>`."
            )
        actor = found[0]
    elif open_console:
        actor = LOCAL
    else:
        reason = (
            "this console has user accounts"
            if is_loopback(host)
            else f"{host} is another machine (without a token the API answers this machine only)"
        )
        raise AuthError(
            f"Send `Authorization: Bearer <token>`: {reason}. Create a token on the console's API tokens page "
            "(or `make api-token USERNAME=you NAME=...`)."
        )
    with acting_as(actor):
        yield
