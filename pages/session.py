"""The signed-in user of this browser session: restored from a cookie after a reload, set as the acting user of
every script run (and fragment run) so the services know who acts.

The cookie holds a random session token (the registry keeps only its SHA-256); it is set and cleared by a small
script because Streamlit reads cookies but has no call to write them.
"""

import functools
import json
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import streamlit as st

from services.access import LOCAL, Actor, Role, allowed, auth_required, session_actor, set_acting_user

COOKIE = "rmn_session"
COOKIE_MAX_AGE_S = 7 * 24 * 3600
P = ParamSpec("P")
T = TypeVar("T")


def current_actor() -> Actor | None:
    """Who this browser session acts as: LOCAL on an open console, the signed-in user, or None (sign in first)."""
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
    """Whether the acting user has `role` (pages hide what the services would refuse anyway)."""
    return allowed(current_actor(), role)


def remember(token: str) -> None:
    """After sign-in: keep the token for this session and, on the next run, in a cookie for reloads."""
    st.session_state["session_token"] = token
    st.session_state["cookie_action"] = "set"
    st.session_state.pop("signed_out", None)


def forget() -> None:
    """After sign-out: drop the token here and clear the cookie on the next run."""
    st.session_state.pop("session_token", None)
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
