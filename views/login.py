"""Sign in and sign up: username or e-mail and password; password rules, confirmation, clear errors."""

import streamlit as st

from services.access import MIN_PASSWORD, ConsoleError, has_users, login, signup
from views.common import page_title, plain
from views.session import cookies_served, remember, sso_configured

page_title("RMN LoRA Console")
if sso_configured():
    if refused := st.session_state.get("sso_error"):
        st.error(plain(refused), icon=":material/error:")
        if st.button("Sign out of single sign-on", key="sso_sign_out", icon=":material/logout:"):
            st.session_state.pop("sso_state", None)
            st.session_state.pop("sso_error", None)
            st.logout()
    elif st.button("Sign in with single sign-on", key="sso_sign_in", type="primary", icon=":material/key:"):
        st.login()  # to the organisation's OIDC provider and back; the app maps the identity to an account
    st.caption("Or sign in with a console account:")
sign_in, sign_up = st.tabs([":material/login: Sign in", ":material/person_add: Sign up"])

with sign_in, st.form("login_form"):
    identifier = st.text_input("Username or e-mail", key="login_identifier", max_chars=254)
    password = st.text_input("Password", type="password", key="login_password", max_chars=256)
    if st.form_submit_button("Sign in", type="primary", icon=":material/login:"):
        if not identifier.strip() or not password:
            st.error("Type your username (or e-mail) and your password.", icon=":material/error:")
        else:
            try:
                token, actor = login(identifier, password)
            except ConsoleError as error:
                st.error(plain(error), icon=":material/error:")
            else:
                remember(token)
                st.rerun()
    st.caption("No account yet? Open **Sign up** above.")
    if not cookies_served():
        st.caption("This server was started without serve.py (`make run`), so a sign-in lasts until the tab reloads.")

with sign_up:
    if not has_users():
        st.info("No account exists yet: the first one you create here is the console's admin.", icon=":material/info:")
    with st.form("signup_form"):
        username = st.text_input("Username", key="signup_username", max_chars=32, help="3-32 letters, digits, _ . -")
        email = st.text_input("E-mail", key="signup_email", max_chars=254)
        new_password = st.text_input(
            "Password",
            type="password",
            key="signup_password",
            max_chars=256,
            help=f"At least {MIN_PASSWORD} characters with three of: lower case, upper case, digits, symbols; "
            "not your username or e-mail name.",
        )
        confirm = st.text_input("Confirm password", type="password", key="signup_confirm", max_chars=256)
        if st.form_submit_button("Sign up", type="primary", icon=":material/person_add:"):
            try:
                user = signup(username, email, new_password, confirm)
                token, _ = login(user.username, new_password)
            except ConsoleError as error:
                st.error(plain(error), icon=":material/error:")
            else:
                remember(token)
                st.rerun()
    st.caption("New accounts can read and run inference; an admin gives the practitioner role.")
