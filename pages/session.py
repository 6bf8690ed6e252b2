"""The signed-in user of this browser session: restored from a cookie after a reload, set as the acting user of
every script run (and fragment run) so the services know who acts.

Two ways in. Single sign-on: `st.login` sends the browser to the organisation's OIDC provider, and Streamlit's
server keeps the identity in its own signed, HttpOnly cookie; each run maps that identity to a console account.
Password sign-in: the cookie holds a random session token (the registry keeps only its SHA-256, so sign-out and an
admin revoke it server-side); it is written by a small script, because a Streamlit page has no call that sets a
cookie in the HTTP response, so it cannot be HttpOnly: it is SameSite=Strict and lives 8 hours (the server-side
session's idle limit), and the token is worthless once its session ends.
"""

import functools
import json
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import streamlit as st

from services.access import (
    LOCAL,
    SESSION_IDLE,
    Actor,
    ConsoleError,
    Role,
    allowed,
    auth_required,
    refusal,
    session_actor,
    set_acting_user,
    sso_actor,
    sso_sign_in,
)

COOKIE = "rmn_session"
COOKIE_MAX_AGE_S = int(SESSION_IDLE.total_seconds())
P = ParamSpec("P")
T = TypeVar("T")


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
    """After sign-out: drop the token here and clear the cookie on the next run."""
    st.session_state.pop("session_token", None)
    st.session_state.pop("sso_state", None)
    st.session_state["signed_out"] = True  # the cookie Streamlit read when this tab connected is stale now
    st.session_state["cookie_action"] = "clear"


def sync_cookie() -> None:
    """Write or clear the session cookie once, in a run that is not cut short by a rerun."""
    action = st.session_state.pop("cookie_action", None)
    if action == "set" and (token := st.session_state.get("session_token")):
        value = f"{COOKIE}={token}; path=/; max-age={COOKIE_MAX_AGE_S}; SameSite=Strict"
    elif action == "clear":
        value = f"{COOKIE}=; path=/; max-age=0; SameSite=Strict"
    else:
        return
    st.html(f"<script>document.cookie = {json.dumps(value)};</script>", unsafe_allow_javascript=True)
