"""Sign-in in a real browser: a console with accounts asks for sign-in, keeps it over a reload, signs out, says
when a password is wrong, locks an account, hides writes from a viewer on every page (whose writes the services
refuse too), and lets an admin change a role.

This server has its own registry with accounts and one of everything (a trained adapter, a job, a federation, an
evaluation, a playground run, a package), so every page has its write controls to hide; the shared console of the
other browser tests stays open.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_server import ConsoleServer
from playwright.sync_api import expect

from tests.browser.widgets import choose
from tests.full_registry import build_full_registry

STRONG = "Correct-Horse-42"
# The buttons a viewer may press (by key): reading, running inference, the wizard's steps.
READ_ONLY = {"fed_load", "fed_run", "ab_run", "test_mapping", "package_check", "pg_history_load", "pg_run"}
READ_ONLY |= {"wizard_back", "wizard_next", "pg_remote_run", "endpoint_check"}
OWN_ACCOUNT = {"api_token_revoke", "FormSubmitter-api_token_create-Create-token"}  # every role's own API tokens
ENABLED_BUTTONS = """() => Array.from(document.querySelectorAll(
    '[data-testid="stMain"] [data-testid="stButton"] button, [data-testid="stMain"] [data-testid="stFormSubmitButton"] button'
  )).filter(b => !b.disabled).map(b => {
    const keyed = b.closest('[class*="st-key-"]');
    const key = keyed ? [...keyed.classList].find(c => c.startsWith('st-key-')).slice(7) : '';
    return [key, b.innerText.trim()];
  })"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """A server on loopback whose registry has an admin, a viewer, a user to lock out, one of everything (made as
    the local user before the first account existed) and the dataset 'kept'."""
    root = tmp_path_factory.mktemp("secured")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        patch.setenv("RMN_LORA_MODELS", str(root / "models"))
        home = build_full_registry(root, runs=True)
        from registry.access import create_user
        from services import upload_dataset

        create_user("root", STRONG, "admin", email="root@example.com")
        create_user("val", STRONG, "viewer", email="val@example.com")
        create_user("lock", STRONG, "practitioner")
        rows = tmp_path_factory.mktemp("rows") / "kept.jsonl"
        rows.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(5)))
        upload_dataset("kept", rows)
    server = ConsoleServer(home, root / "models", tmp_path_factory.mktemp("secured-log") / "server.log")
    try:
        yield server.url, home
    finally:
        server.stop()


def sign_in(page, wait, identifier: str, password: str) -> None:
    page.get_by_label("Username or e-mail").fill(identifier)
    page.get_by_label("Password", exact=True).first.fill(password)
    page.get_by_role("button", name="Sign in").click()
    wait(page)


def wait_for_session_cookie(page, timeout_s: float = 30.0) -> None:
    """After a sign-in the page sends the browser through /_rmn/session/open for its HttpOnly cookie; a navigation
    before that exchange ends would start a session without it."""
    deadline = time.monotonic() + timeout_s
    while not any(c["name"] == "rmn_session" for c in page.context.cookies()):
        assert time.monotonic() < deadline, "the sign-in cookie was never set"
        page.wait_for_timeout(200)


def test_sign_in_survives_a_reload_and_sign_out_ends_it(secured, browser_page, wait_for_streamlit, tmp_path):
    url, _ = secured
    page = browser_page
    page.goto(url)
    wait_for_streamlit(page)
    assert page.get_by_role("button", name="Sign in").is_visible()
    assert page.locator("h1", has_text="RMN LoRA Console").count() == 1  # the sign-in page, no navigation
    assert page.get_by_text("Dataset Library").count() == 0

    sign_in(page, wait_for_streamlit, "root@example.com", STRONG)
    page.get_by_text("Signed in as").wait_for()
    wait_for_session_cookie(page)
    assert "root" in page.get_by_text("Signed in as").inner_text()
    page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)

    page.reload()
    wait_for_streamlit(page)
    page.get_by_text("Signed in as").wait_for()  # the cookie brought the session back
    cookie = next(c for c in page.context.cookies() if c["name"] == "rmn_session")
    # Set by the server's own response (serve.py's session route): no page script can read it. A copy taken some
    # other way lives no longer than the session's idle limit (8 h) and dies with the server-side session.
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert 0 < cookie["expires"] - time.time() <= 8 * 3600
    assert page.evaluate("document.cookie").find("rmn_session") == -1
    thief = page.context.browser.new_context()
    thief.add_cookies([cookie])
    stolen = thief.new_page()
    stolen.goto(url)
    wait_for_streamlit(stolen)
    stolen.get_by_text("Signed in as").wait_for()  # a copied cookie works while the session lives...

    page.get_by_role("button", name="Sign out").click()
    wait_for_streamlit(page)
    page.get_by_role("button", name="Sign in").wait_for()
    page.reload()
    wait_for_streamlit(page)
    page.get_by_role("button", name="Sign in").wait_for()  # signed out stays signed out
    assert page.get_by_text("Signed in as").count() == 0
    stolen.goto(url)
    wait_for_streamlit(stolen)
    stolen.get_by_role("button", name="Sign in").wait_for()  # ...and is worthless once its owner signs out
    assert stolen.get_by_text("Signed in as").count() == 0
    thief.close()


def test_a_wrong_password_and_then_a_lockout(secured, browser_page, wait_for_streamlit, tmp_path):
    url, _ = secured
    page = browser_page
    page.goto(url)
    wait_for_streamlit(page)
    sign_in(page, wait_for_streamlit, "lock", "not the password")
    error = page.locator('[data-testid="stAlert"]', has_text="Wrong username or password")
    error.wait_for()
    assert "attempt(s) left" in error.inner_text()
    for _ in range(4):
        sign_in(page, wait_for_streamlit, "lock", "not the password")
    sign_in(page, wait_for_streamlit, "lock", STRONG)  # the right password, too late
    page.locator('[data-testid="stAlert"]', has_text="locked").wait_for()
    page.screenshot(path=str(tmp_path / "locked.png"), full_page=True)
    assert page.get_by_text("Signed in as").count() == 0


def test_a_viewer_sees_no_writes_and_the_service_refuses_them(secured, browser_page, wait_for_streamlit, tmp_path):
    url, home = secured
    page = browser_page
    page.goto(url)
    wait_for_streamlit(page)
    sign_in(page, wait_for_streamlit, "val", STRONG)
    page.get_by_text("Signed in as").wait_for()
    wait_for_session_cookie(page)
    page.goto(f"{url}/dataset_library")
    wait_for_streamlit(page)
    page.get_by_text("Dataset details").wait_for()
    assert page.get_by_text("Upload dataset").count() == 0
    assert page.get_by_role("button", name="Delete").count() == 0
    assert page.get_by_role("button", name="Validate").count() == 0
    page.screenshot(path=str(tmp_path / "viewer-library.png"), full_page=True)
    links = page.locator('[data-testid="stSidebarNav"] a')
    paths = sorted({link.get_attribute("href").rsplit("/", 1)[-1] for link in links.all()})
    assert len(paths) >= 18 and "audit" not in paths, paths  # every page but the admins' audit trail
    found = {}
    for path in paths:
        page.goto(f"{url}/{path}")
        wait_for_streamlit(page)
        page.wait_for_timeout(500)  # a fragment's first run
        assert page.get_by_test_id("stException").count() == 0, path
        assert page.get_by_test_id("stFileUploader").count() == 0, path
        writes = [(k, label) for k, label in page.evaluate(ENABLED_BUTTONS) if k not in READ_ONLY | OWN_ACCOUNT]
        found[path] = [(k, label) for k, label in writes if not k.startswith(("fed_sample_", "retry_"))]
        page.screenshot(path=str(tmp_path / f"viewer-{path or 'home'}.png"), full_page=True)
    assert {path: buttons for path, buttons in found.items() if buttons} == {}
    page.goto(f"{url}/training_jobs")
    wait_for_streamlit(page)
    page.get_by_text("Your role can follow jobs but not start them").wait_for()
    page.goto(f"{url}/federations")
    wait_for_streamlit(page)
    page.get_by_text("Your role can test saved federations but not compose them").wait_for()
    page.goto(f"{url}/users")
    wait_for_streamlit(page)
    page.get_by_text("Only admins manage users").wait_for()
    assert page.get_by_role("link", name="Audit trail").count() == 0

    from registry.errors import Forbidden
    from services import delete_dataset, list_datasets
    from services.access import acting_as, session_actor

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(home))
        token = next(c["value"] for c in page.context.cookies() if c["name"] == "rmn_session")
        viewer = session_actor(token)  # the browser's own session, as the server sees it
        assert viewer is not None and viewer.role == "viewer"
        with acting_as(viewer), pytest.raises(Forbidden, match="val may not"):
            delete_dataset("kept")
        assert "kept" in [r.name for r in list_datasets()]


def test_an_admin_changes_a_role(secured, browser_page, wait_for_streamlit, tmp_path):
    url, home = secured
    page = browser_page
    page.goto(url)
    wait_for_streamlit(page)
    sign_in(page, wait_for_streamlit, "root", STRONG)
    page.get_by_text("Signed in as").wait_for()
    wait_for_session_cookie(page)
    page.goto(f"{url}/users")
    wait_for_streamlit(page)
    page.get_by_text("Change a user").wait_for()
    choose(page, wait_for_streamlit, "User", "val")
    choose(page, wait_for_streamlit, "Role", "ML practitioner", scope=page.locator(".st-key-users_role_val"))
    page.get_by_role("button", name="Save role").click()
    toast = page.get_by_test_id("stToast").filter(has_text="val is now ML practitioner")
    expect(toast).to_be_visible(timeout=60_000)  # looked for while the run goes on: a toast shows for 10 s
    wait_for_streamlit(page)
    page.screenshot(path=str(tmp_path / "users.png"), full_page=True)

    page.goto(f"{url}/audit")
    wait_for_streamlit(page)
    page.get_by_text("Chain intact").wait_for()
    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(home))
        from registry.access import list_users
        from registry.audit import entries

        assert {u.username: u.role for u in list_users()}["val"] == "practitioner"
        changed = [e for e in entries() if e.action == "access.set_role"]
        assert [(e.user, e.target, e.outcome) for e in changed] == [("root", "val", "ok")]
