"""API tokens: each user's keys for the HTTP API (scripts, nightly jobs, OpenAI clients); admins see everyone's."""

import pandas as pd
import streamlit as st

from services.access import ConsoleError, Role, has_users, list_accounts
from services.api_tokens import create_token, list_tokens, revoke_token
from views.common import attempt, done, page_title, plain, show_table
from views.session import act_as_session_user, can

page_title("API tokens")
st.caption(
    "A token lets a script call the HTTP API (`make api`, OpenAPI docs at /docs) as you, with your role: send it "
    "as `Authorization: Bearer <token>`, or as the `api_key` of an OpenAI client. Only a hash is stored, so a "
    "token is shown once, when it is made. Revoke one that leaked: it stops working at once."
)

actor = act_as_session_user()  # this run acts as the signed-in user, whoever ran the page
if not has_users():
    st.info(
        "This console is open (this machine only, no accounts), and so is its API: it answers this machine without "
        "a token. Create an admin on the Users page to turn sign-in and API tokens on.",
        icon=":material/lock_open:",
    )
    st.stop()
if actor is None:
    st.stop()
admin = can(Role.ADMIN)

if shown := st.session_state.pop("api_token_shown", None):
    username, name, token = shown
    st.success(plain(f"New token '{name}' for {username}. Copy it now: it is not shown again."), icon=":material/key:")
    st.code(token, language=None)

with st.form("api_token_create", clear_on_submit=True):
    st.subheader("New token")
    left, right = st.columns(2)
    name = left.text_input("What it is for", max_chars=64, placeholder="nightly retrain")
    owner = actor.username
    if admin:
        accounts = attempt(list_accounts, "retry_token_accounts") or []
        names = [u.username for u in accounts]
        owner = right.selectbox(
            "For user", names, index=names.index(actor.username) if actor.username in names else 0,
            help="The token acts as this user, with this user's role.",
        )  # fmt: skip
    else:
        right.text_input("For user", value=actor.username, disabled=True)
    if st.form_submit_button("Create token", type="primary", icon=":material/key:"):
        try:
            token, record = create_token(owner, name)
        except ConsoleError as error:
            st.error(plain(error), icon=":material/error:")
        else:
            st.session_state["api_token_shown"] = (record.username, record.name, token)
            st.rerun()

st.subheader("Everyone's tokens" if admin else "Your tokens")
tokens = attempt(list_tokens, "retry_tokens")
if tokens is not None:
    if not tokens:
        st.caption("No tokens yet.")
    else:
        show_table(
            pd.DataFrame(
                {
                    "Id": [t.id for t in tokens],
                    "User": [t.username for t in tokens],
                    "For": [t.name for t in tokens],
                    "Created": [t.created for t in tokens],
                    "Last used": [t.last_used for t in tokens],
                }
            ),
            hide_index=True,
            column_config={
                "Created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
                "Last used": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            },
        )
        labels = {t.id: f"{t.id} · {t.username} · {t.name}" for t in tokens}
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        chosen = left.selectbox("Token", list(labels), format_func=labels.get, key="api_token_pick")
        if right.button("Revoke", key="api_token_revoke", icon=":material/key_off:"):
            revoked = attempt(lambda: revoke_token(chosen), "retry_token_revoke")
            if revoked is not None:
                done(f"Revoked {revoked.id} ({revoked.name}) of {revoked.username}.", rerun="app")
