"""Single sign-on in a real browser against a real OIDC provider on loopback (oidc-provider-mock, an OpenID Connect
provider built on Authlib): Streamlit's own `st.login` sends Chromium to the provider, the provider sends it back
with a code, Streamlit's server exchanges it and keeps the identity in its HttpOnly cookie, and the console maps the
identity to an account: the first one is the admin, later ones get the role the admin chose for single sign-on.
"""

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_server import ConsoleServer, free_port
from playwright.sync_api import expect

from tests.browser.widgets import choose

ALICE = {"email": "alice@example.com", "email_verified": True, "preferred_username": "alice", "name": "Alice"}
BOB = {"email": "bob@example.com", "email_verified": True, "preferred_username": "bob", "name": "Bob"}


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The OIDC provider, with two people one click away on its authorize page."""
    from oidc_provider_mock import User, run_server_in_thread

    users = [User(sub="alice-sub", claims=ALICE), User(sub="bob-sub", claims=BOB)]
    with run_server_in_thread(user_claims=users) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def sso_console(provider, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A console on loopback with no accounts yet, whose secrets point st.login at the provider."""
    home = tmp_path_factory.mktemp("sso-home")
    port = free_port()
    secrets_file = tmp_path_factory.mktemp("sso-secrets") / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        'client_id = "rmn-console"\n'
        f'client_secret = "{secrets.token_urlsafe(16)}"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
    )
    log = tmp_path_factory.mktemp("sso-log") / "server.log"
    server = ConsoleServer(home, None, log, port=port, args=("--secrets.files", str(secrets_file)))
    try:
        yield server.url, home
    finally:
        server.stop()


def at_provider_choose(page, wait, who: str) -> None:
    """On the provider's authorize page, sign in as `who`; back on the console, wait for its run."""
    page.get_by_role("heading", name="Authorize Client").wait_for(timeout=30_000)
    assert page.url.startswith("http://localhost:")  # really at the provider
    page.get_by_role("button", name=who).click()
    page.wait_for_url("http://127.0.0.1:*/**", timeout=30_000)
    wait(page)


def test_single_sign_on_first_admin_default_role_and_sign_out(sso_console, browser_page, wait_for_streamlit, tmp_path):
    url, home = sso_console
    page = browser_page
    page.goto(f"{url}/users")
    wait_for_streamlit(page)
    page.get_by_role("button", name="Sign in with single sign-on as the admin").click()
    at_provider_choose(page, wait_for_streamlit, "alice-sub")
    signed = page.get_by_text("Signed in as")
    signed.wait_for()
    assert "alice" in signed.inner_text() and "Admin" in signed.inner_text()
    cookies = page.context.cookies()
    identity = [c for c in cookies if c["name"].startswith("_streamlit_user")]
    assert identity and all(c["httpOnly"] for c in identity)  # Streamlit's server set them: no script reads them
    assert "rmn_session" not in {c["name"] for c in cookies}

    page.goto(f"{url}/users")
    wait_for_streamlit(page)
    page.get_by_text("Role of a new single-sign-on account").wait_for()
    # Typed, then the option clicked: Enter pressed before the typed text had filtered the list (a loaded box) kept
    # the old role, and Save stayed disabled.
    choose(page, wait_for_streamlit, "Role of a new single-sign-on account", "ML practitioner")
    page.get_by_role("button", name="Save", exact=True).click()
    toast = page.get_by_test_id("stToast").filter(has_text="New single-sign-on accounts are now ML practitioner")
    expect(toast).to_be_visible(timeout=60_000)  # looked for while the run goes on: a toast shows for 10 s
    wait_for_streamlit(page)
    page.screenshot(path=str(tmp_path / "sso-users.png"), full_page=True)

    page.reload()
    wait_for_streamlit(page)
    page.get_by_text("Signed in as").wait_for()  # the identity cookie survives a reload
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click(timeout=30_000)  # the provider's end-session page
    page.wait_for_url("http://127.0.0.1:*/**", timeout=30_000)
    wait_for_streamlit(page)
    page.get_by_role("button", name="Sign in with single sign-on").wait_for()
    assert page.get_by_text("Signed in as").count() == 0
    assert not [c for c in page.context.cookies() if c["name"].startswith("_streamlit_user")]

    page.get_by_role("button", name="Sign in with single sign-on").click()
    at_provider_choose(page, wait_for_streamlit, "bob-sub")
    signed = page.get_by_text("Signed in as")
    signed.wait_for()
    assert "bob" in signed.inner_text() and "ML practitioner" in signed.inner_text()
    page.screenshot(path=str(tmp_path / "sso-bob.png"), full_page=True)
    page.goto(f"{url}/users")
    wait_for_streamlit(page)
    page.get_by_text("Only admins manage users").wait_for()

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(home))
        from registry.access import list_users
        from registry.audit import entries, verify

        accounts = {u.username: (u.role.value, u.email, u.sso) for u in list_users()}
        issuer = accounts["alice"][2].split(" ")[0]
        assert issuer.startswith("http://localhost:")
        assert accounts == {
            "alice": ("admin", "alice@example.com", f"{issuer} alice-sub"),
            "bob": ("practitioner", "bob@example.com", f"{issuer} bob-sub"),
        }
        trail = [(e.user, e.action, e.outcome) for e in entries()]
        assert ("alice", "access.sso_signup", "ok") in trail and ("bob", "access.sso_signup", "ok") in trail
        assert ("alice", "access.set_sso_default_role", "ok") in trail
        assert ("alice", "access.logout", "ok") in trail
        assert verify().ok
