"""Users and roles (admins): who has an account, what each may do, and the first admin of an open console."""

import pandas as pd
import streamlit as st

from services.access import (
    MIN_PASSWORD,
    ROLE_HELP,
    ConsoleError,
    Role,
    create_first_admin,
    create_user,
    delete_user,
    has_admin,
    list_accounts,
    login,
    set_role,
    set_sso_default_role,
    sso_default_role,
    unlock_user,
)
from views.common import attempt, done, page_title, plain, show_table
from views.session import may, remember, sso_configured

page_title("Users")
ROLES = list(Role)


def first_admin_form() -> None:
    """An open console (loopback, no accounts): the practitioner can create the admin; sign-in is on from then."""
    st.info(
        "This console is open: it listens on this machine only and has no accounts, so nobody signs in. Create an "
        "admin account to turn sign-in on (needed before the console may listen on other addresses).",
        icon=":material/lock_open:",
    )
    if sso_configured() and st.button(
        "Sign in with single sign-on as the admin", key="first_admin_sso", icon=":material/key:"
    ):
        st.login()  # the console's first account is its admin, whichever way it is made
    with st.form("first_admin"):
        username = st.text_input("Admin username", max_chars=32, key="first_admin_username")
        email = st.text_input("E-mail (optional)", max_chars=254, key="first_admin_email")
        password = st.text_input(
            "Password", type="password", max_chars=256, key="first_admin_password",
            help=f"At least {MIN_PASSWORD} characters with three of: lower case, upper case, digits, symbols.",
        )  # fmt: skip
        confirm = st.text_input("Confirm password", type="password", max_chars=256, key="first_admin_confirm")
        if st.form_submit_button("Create admin and sign in", type="primary", icon=":material/admin_panel_settings:"):
            try:
                user = create_first_admin(username, password, email, confirm)
                token, _ = login(user.username, password)
            except ConsoleError as error:
                st.error(plain(error), icon=":material/error:")
            else:
                remember(token)
                st.rerun()


def users_table() -> None:
    users = attempt(list_accounts, "retry_users")
    if users is None:
        return
    show_table(
        pd.DataFrame(
            {
                "Username": [u.username for u in users],
                "E-mail": [u.email for u in users],
                "Role": [u.role.label for u in users],
                "Signs in with": ["single sign-on" if u.sso else "password" for u in users],
                "Created": [u.created for u in users],
                "Last sign-in": [u.last_login for u in users],
                "Locked until": [u.locked_until for u in users],
            }
        ),
        hide_index=True,
        column_config={
            "Created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "Last sign-in": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "Locked until": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
    st.subheader("Change a user")
    with st.container(border=True):
        left, middle, right = st.columns([2, 2, 3], vertical_alignment="bottom")
        name = left.selectbox("User", [u.username for u in users], key="users_pick")
        user = next(u for u in users if u.username == name)
        role = middle.selectbox(
            "Role", ROLES, index=ROLES.index(user.role), format_func=lambda r: r.label, key=f"users_role_{name}"
        )
        right.caption(ROLE_HELP[role])
        buttons = st.columns([1, 1, 1, 3])
        if buttons[0].button("Save role", type="primary", key="users_save_role", icon=":material/save:"):
            if attempt(lambda: set_role(name, role), "retry_set_role") is not None:
                done(f"{name} is now {role.label}.", rerun="app")
        if buttons[1].button("Unlock", key="users_unlock", icon=":material/lock_open:", disabled=not user.locked_until):
            if attempt(lambda: unlock_user(name), "retry_unlock") is not None:
                done(f"{name} is unlocked.", rerun="app")
        if buttons[2].button("Delete", key="users_delete", icon=":material/delete:"):
            try:
                delete_user(name)
            except ConsoleError as error:
                st.error(plain(error), icon=":material/error:")
            else:
                done(f"Deleted {name}.", rerun="app")


def sso_panel() -> None:
    """The role an account made by single sign-on starts with (its first sign-in creates it)."""
    st.subheader("Single sign-on")
    current = sso_default_role()
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    role = left.selectbox(
        "Role of a new single-sign-on account",
        ROLES,
        index=ROLES.index(current),
        format_func=lambda r: r.label,
        key="sso_default_role",
        help="Someone who signs in through the identity provider for the first time gets an account with this "
        "role (an existing account with the e-mail the provider confirmed is used instead).",
    )
    if right.button("Save", key="sso_default_role_save", icon=":material/save:", disabled=role == current):
        try:
            set_sso_default_role(role)
        except ConsoleError as error:
            st.error(plain(error), icon=":material/error:")
        else:
            done(f"New single-sign-on accounts are now {role.label}.", rerun="app")


def add_user_form() -> None:
    st.subheader("Add a user")
    with st.form("add_user", clear_on_submit=True):
        left, right = st.columns(2)
        username = left.text_input("Username", max_chars=32)
        email = right.text_input("E-mail", max_chars=254)
        password = left.text_input("Initial password", type="password", max_chars=256)
        role = right.selectbox("Role", ROLES, format_func=lambda r: r.label)
        if st.form_submit_button("Add user", icon=":material/person_add:"):
            try:
                create_user(username, password, role, email=email)
            except ConsoleError as error:
                st.error(plain(error), icon=":material/error:")
            else:
                done(f"Added {username} as {role.label}.", rerun="app")


if not has_admin():
    first_admin_form()
elif not may(set_role, create_user, delete_user, unlock_user):
    st.warning("Only admins manage users. Ask an admin to change your role.", icon=":material/block:")
else:
    users_table()
    add_user_form()
    if sso_configured():
        sso_panel()
