"""Who may call the API. Until the console has users and tokens, only this machine may (loopback).

The policy is one FastAPI dependency that `create_app(access=...)` runs before every route. A token policy
replaces it without touching a route: read `Authorization: Bearer ...`, raise `AccessDenied` (401) or
`Forbidden` (403), or set the acting user for the request (an `async` dependency that `yield`s can set a
contextvar around the whole request and reset it afterwards).
"""

import ipaddress
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request

AccessPolicy = Callable[..., Any]


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def loopback_only(request: Request) -> None:
    """The default policy: requests from this machine only (the server also binds loopback by default)."""
    host = request.client.host if request.client else None
    if not is_loopback(host):
        raise HTTPException(
            status_code=403,
            detail=f"{host} is not this machine: the API answers loopback callers only until API tokens exist.",
        )
