"""The signed-in user of this browser session: restored from a cookie after a reload, set as the acting user of
every script run (and fragment run) so the services know who acts.

Two ways in. Single sign-on: `st.login` sends the browser to the organisation's OIDC provider, and Streamlit's
server keeps the identity in its own signed, HttpOnly cookie; each run maps that identity to a console account.
Password sign-in: the cookie holds a random session token (the registry keeps only its SHA-256, so sign-out and an
admin revoke it server-side). A page script cannot set a cookie in an HTTP response, so the console's server
(serve.py, an `st.App`) mounts two routes of ours: after sign-in the page sends the browser to
/_rmn/session/open with a one-time code, and that response sets the cookie HttpOnly (no script can read it),
SameSite=Strict, for 8 hours (the session's idle limit); sign-out goes through /_rmn/session/close, which ends the
session and clears the cookie. Started without serve.py (`streamlit run app.py`), sign-in lasts for the tab.
"""

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import streamlit as st

from services.access import (
    LOCAL,
    SESSION_IDLE,
    Actor,
    ConsoleError,
    Role,
    allowed,
    auth_required,
    logout,
    redeem_handoff,
    refusal,
    session_actor,
    session_handoff,
    set_acting_user,
    sso_actor,
    sso_sign_in,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

COOKIE = "rmn_session"
COOKIE_MAX_AGE_S = int(SESSION_IDLE.total_seconds())
ROUTES = "/_rmn/session"
P = ParamSpec("P")
T = TypeVar("T")
_mounted: list[bool] = [False]


def session_routes() -> list["Route"]:
    """The HTTP routes that set and clear the HttpOnly session cookie (serve.py mounts them on Streamlit's server).

    /open?code=... trades a one-time code from `session_handoff` for the cookie; a navigation from another site
    is refused (Sec-Fetch-Site), so nobody can sign a browser in as someone else. /close ends the session named by
    the cookie and clears it. Both answer with a redirect to the console."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    async def open_session(request: "Request") -> "Response":
        response = RedirectResponse("/", status_code=303)
        if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return response
        token = await run_in_threadpool(redeem_handoff, request.query_params.get("code"))
        if token is not None:
            response.set_cookie(
                COOKIE, token, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True, samesite="strict",
                secure=request.url.scheme == "https",
            )  # fmt: skip
        return response

    async def close_session(request: "Request") -> "Response":
        await run_in_threadpool(logout, request.cookies.get(COOKIE))
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    _mounted[0] = True
    return [Route(f"{ROUTES}/open", open_session), Route(f"{ROUTES}/close", close_session)]


def cookies_served() -> bool:
    """Whether this process serves the session routes (started through serve.py), so a sign-in survives reloads."""
    return _mounted[0]


def sso_configured() -> bool:
    """Whether single sign-on is set up: an [auth] section (Streamlit's own st.login settings) in the secrets."""
    try:
        return bool(st.secrets.load_if_toml_exists() and st.secrets.get("auth"))
    except Exception:  # noqa: BLE001 — unreadable secrets mean no single sign-on; Streamlit reports the file itself
        return False


def sso_claims() -> dict | None:
    """The OIDC claims of a browser signed in through `st.login`, else None."""
    return st.user.to_dict() if sso_configured() and st.user.is_logged_in else None


def _sso_actor(claims: dict) -> Actor | None:
    """The console account of this identity: enrolled (and the sign-in recorded) on the session's first run."""
    if st.session_state.get("sso_state") is None:
        try:
            actor = sso_sign_in(claims)
        except ConsoleError as error:
            st.session_state["sso_state"], st.session_state["sso_error"] = "refused", str(error)
            return None
        st.session_state["sso_state"] = "signed_in"
        return actor
    return sso_actor(claims) if st.session_state["sso_state"] == "signed_in" else None


def current_actor() -> Actor | None:
    """Who this browser session acts as: the single-sign-on user, LOCAL on an open console, the password-signed-in
    user, or None (sign in first)."""
    if (claims := sso_claims()) is not None:
        return _sso_actor(claims)
    if not auth_required(st.get_option("server.address")):
        return LOCAL
    token = st.session_state.get("session_token")
    if token is None and not st.session_state.get("signed_out"):
        token = st.context.cookies.get(COOKIE)
    actor = session_actor(token)
    if actor is None:
        st.session_state.pop("session_token", None)
    else:
        st.session_state["session_token"] = token
    return actor


def act_as_session_user() -> Actor | None:
    """Set the acting user for this run (a fragment rerun skips app.py, so fragments call this too)."""
    actor = current_actor()
    set_acting_user(actor)
    return actor


def fragment(run_every: float | None = None) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """`st.fragment` whose every rerun acts as the signed-in user (use it for fragments that call a write)."""

    def wrap(function: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            act_as_session_user()
            return function(*args, **kwargs)

        return st.fragment(run, run_every=run_every)

    return wrap


def can(role: Role) -> bool:
    """Whether the signed-in user has `role` (for pages that are about a role, like Users; a write control asks
    `may` about its service call instead)."""
    return allowed(current_actor(), role)


def may(*services: Callable[..., object], why: str | None = None) -> bool:
    """Whether this session's user may call every one of `services` (calls guarded by `requires`): a page shows a
    write control only when this is true, so it shows exactly what the service would accept. With `why` (what the
    hidden controls do), a refusal also says so in a caption with the role it needs."""
    actor = current_actor()
    reasons = [reason for service in services if (reason := refusal(service, actor)) is not None]
    if reasons and why is not None:
        st.caption(f"{why}: {reasons[0]}", help="Reading stays open to every role; the services refuse writes too.")
    return not reasons


def remember(token: str) -> None:
    """After sign-in: keep the token for this session and, on the next run, in a cookie for reloads."""
    st.session_state["session_token"] = token
    st.session_state["cookie_action"] = "set"
    st.session_state.pop("signed_out", None)


def forget() -> None:
    """After sign-out: drop the token here and, for a password session, clear the cookie on the next run."""
    password_session = st.session_state.pop("session_token", None) is not None
    st.session_state.pop("sso_state", None)
    st.session_state["signed_out"] = True  # the cookie Streamlit read when this tab connected is stale now
    if password_session:
        st.session_state["cookie_action"] = "clear"


def sync_cookie() -> None:
    """After a sign-in or sign-out, send the browser once through the session route that sets or clears the
    cookie (the tab reloads onto the console)."""
    action = st.session_state.pop("cookie_action", None)
    if not cookies_served():
        return
    if action == "set" and (token := st.session_state.get("session_token")):
        target = f"{ROUTES}/open?code={session_handoff(token)}"
    elif action == "clear":
        target = f"{ROUTES}/close"
    else:
        return
    st.html(f"<script>window.location.replace({json.dumps(target)});</script>", unsafe_allow_javascript=True)
