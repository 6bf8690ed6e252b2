"""Accounts, sign-in, roles enforced by the services themselves, and the audit trail's hash chain."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from registry import access as store
from registry.errors import ConsoleError, Forbidden
from services import access
from services.access import Actor, Role

STRONG = "Correct-Horse-42"


def rows_file(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(3)))
    return path


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("short1A!", "at least 12 characters"),
        ("alllowercaseletters", "three of"),
        ("aaaaaaaaaaaA1!", "6 different"),
        ("Maria-Garcia-99", "username"),
    ],
)
def test_password_rules_are_explained(registry, password, says):
    with pytest.raises(store.AuthError, match=says):
        store.create_user("maria-garcia", password, "viewer", email="maria@example.com")


def test_signup_checks_confirmation_email_and_taken_names(registry):
    with pytest.raises(store.AuthError, match="differ"):
        access.signup("owner", "", STRONG, STRONG + "x")
    with pytest.raises(store.AuthError, match="e-mail"):
        access.signup("owner", "not-an-email", STRONG, STRONG)
    first = access.signup("owner", "owner@example.com", STRONG, STRONG)
    assert first.role == Role.ADMIN  # the first account of an open console is its admin
    second = access.signup("guest", "guest@example.com", STRONG, STRONG)
    assert second.role == Role.VIEWER
    with pytest.raises(store.AuthError, match="taken"):
        access.signup("GUEST", "", STRONG, STRONG)
    assert (
        "argon2id" in store.list_users()[0].password_hash and STRONG not in (registry.access / "users.json").read_text()
    )


def test_login_by_name_or_email_wrong_password_and_lockout(registry):
    store.create_user("ana", STRONG, "practitioner", email="ana@example.com")
    token, actor = access.login("ana@example.com", STRONG)
    assert actor == Actor(username="ana", role=Role.PRACTITIONER)
    assert access.session_actor(token) == actor
    with pytest.raises(store.AuthError, match="Wrong username or password"):
        access.login("ana", "wrong password")
    with pytest.raises(store.AuthError, match="Wrong username or password"):
        access.login("nobody", STRONG)  # the same words: an unknown user is not revealed
    for _ in range(store.MAX_FAILURES - 1):
        with pytest.raises(store.AuthError):
            access.login("ana", "wrong password")
    with pytest.raises(store.AuthError, match="locked"):
        access.login("ana", STRONG)  # even the right password waits out the lockout
    with access.acting_as(Actor(username="admin", role=Role.ADMIN)):
        access.unlock_user("ana")
    assert access.login("ana", STRONG)[1].username == "ana"


def test_sessions_expire_and_logout_ends_them(registry, monkeypatch):
    store.create_user("ana", STRONG, "viewer")
    token, _ = access.login("ana", STRONG)
    access.logout(token)
    assert access.session_actor(token) is None
    for forged in (None, "", 12345, b"bytes", "x" * 10_000, "not-a-token"):
        assert access.session_actor(forged) is None  # a cookie is whatever the browser sends
    token, _ = access.login("ana", STRONG)
    later = datetime.now(UTC) + store.SESSION_IDLE + timedelta(minutes=1)

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):
            return later

    monkeypatch.setattr(store, "datetime", Later)
    assert access.session_actor(token) is None


def test_a_role_change_applies_to_a_live_session(registry):
    store.create_user("boss", STRONG, "admin")
    store.create_user("ana", STRONG, "viewer")
    token, _ = access.login("ana", STRONG)
    with access.acting_as(Actor(username="boss", role=Role.ADMIN)):
        access.set_role("ana", "practitioner")
        with pytest.raises(store.AuthError, match="only admin"):
            access.set_role("boss", "viewer")
    assert access.session_actor(token).role == Role.PRACTITIONER


def test_a_viewer_is_refused_by_the_services_themselves(registry, tmp_path):
    from services import delete_dataset, list_datasets, upload_dataset
    from services.mappings import install_demo_data
    from services.training import job_manager

    upload_dataset("kept", rows_file(tmp_path))
    viewer = Actor(username="val", role=Role.VIEWER)
    with access.acting_as(viewer):
        assert [r.name for r in list_datasets()] == ["kept"]  # reading is fine
        for write in (
            lambda: upload_dataset("new", rows_file(tmp_path)),
            lambda: delete_dataset("kept"),
            lambda: install_demo_data(),
            lambda: job_manager().cancel("job_x"),
            lambda: access.create_user("eve", STRONG, "admin"),
            lambda: access.list_accounts(),
        ):
            with pytest.raises(Forbidden, match="val may not"):
                write()
    assert [r.name for r in list_datasets()] == ["kept"]
    denied = [e for e in access.audit.entries() if e.outcome == "denied"]
    assert [e.action for e in denied[:3]] == ["datasets.import", "datasets.delete", "mappings.install_demo_data"]
    assert denied[1].target == "kept" and denied[1].user == "val"


def test_a_server_that_requires_sign_in_refuses_writes_without_a_user(registry, tmp_path):
    from services import upload_dataset

    access.set_default_user(None)
    try:
        with pytest.raises(Forbidden, match="sign in first"):
            upload_dataset("x", rows_file(tmp_path))
    finally:
        access.set_default_user(access.LOCAL)


def test_auth_is_off_only_on_loopback_without_accounts(registry):
    assert not access.auth_required("127.0.0.1") and not access.auth_required("::1")
    assert access.auth_required("0.0.0.0") and access.auth_required("") and access.auth_required("10.1.2.3")
    with pytest.raises(ConsoleError, match="make admin"):
        access.check_can_serve("0.0.0.0")
    access.check_can_serve("127.0.0.1")
    store.create_user("val", STRONG, "viewer")
    assert access.auth_required("127.0.0.1")
    with pytest.raises(ConsoleError, match="make admin"):
        access.check_can_serve("0.0.0.0")  # a viewer is not an admin
    access.create_first_admin("root", STRONG)
    access.check_can_serve("0.0.0.0")


def test_make_admin_command_creates_the_first_admin_once(registry, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(STRONG + "\n"))
    assert access.main(["admin", "--username", "root"]) == 0
    assert store.has_admin()
    monkeypatch.setattr("sys.stdin", io.StringIO(STRONG + "\n"))
    assert access.main(["admin", "--username", "second"]) == 2
    assert "An admin exists already" in capsys.readouterr().err


# ---- the audit trail ---------------------------------------------------------------------------------------------


def scripted_session(tmp_path):
    """Sign-ups, sign-ins (one failing), uploads, a refused write, a delete, a role change, a sign-out."""
    from services import delete_dataset, upload_dataset

    access.signup("root", "root@example.com", STRONG, STRONG)
    access.signup("val", "val@example.com", STRONG, STRONG)
    with pytest.raises(store.AuthError):
        access.login("root", "wrong")
    token, root = access.login("root", STRONG)
    with access.acting_as(root):
        upload_dataset("first", rows_file(tmp_path))
        upload_dataset("second", rows_file(tmp_path))
        access.set_role("val", "practitioner")
    val = access.login("val", STRONG)[1]
    with access.acting_as(Actor(username="val", role=Role.VIEWER)), pytest.raises(Forbidden):
        delete_dataset("first")
    with access.acting_as(val):
        delete_dataset("second")
    access.logout(token)


def test_the_audit_trail_records_every_action_of_a_scripted_session(registry, tmp_path):
    scripted_session(tmp_path)
    seen = [(e.user, e.action, e.target, e.outcome) for e in access.audit.entries()]
    assert seen == [
        ("root", "access.signup", "root", "ok"),
        ("val", "access.signup", "val", "ok"),
        ("root", "access.login", "root", "failed"),
        ("root", "access.login", "root", "ok"),
        ("root", "datasets.import", "first", "ok"),
        ("root", "datasets.import", "second", "ok"),
        ("root", "access.set_role", "val", "ok"),
        ("val", "access.login", "val", "ok"),
        ("val", "datasets.delete", "first", "denied"),
        ("val", "datasets.delete", "second", "ok"),
        ("root", "access.logout", "root", "ok"),
    ]
    check = access.verify_audit()
    assert check.ok and check.entries == len(seen), check.problems


def test_audit_verify_detects_an_edited_and_a_deleted_entry(registry, tmp_path, capsys):
    scripted_session(tmp_path)
    log = registry.audit_log
    original = log.read_text().splitlines(keepends=True)
    assert access.main(["audit-verify"]) == 0

    edited = list(original)
    entry = json.loads(edited[8])
    entry["outcome"] = "ok"  # hide the refused delete
    edited[8] = json.dumps(entry) + "\n"
    log.write_text("".join(edited))
    check = access.verify_audit()
    assert not check.ok and any("line 9" in p and "edited" in p for p in check.problems), check.problems
    assert access.main(["audit-verify"]) == 1
    assert "line 9" in capsys.readouterr().out

    log.write_text("".join(original[:4] + original[5:]))  # drop the first upload
    check = access.verify_audit()
    assert not check.ok and any("line 5" in p and "removed" in p for p in check.problems), check.problems

    log.write_text("".join(original))
    assert access.verify_audit().ok


def test_the_app_on_another_address_serves_nothing_until_an_admin_exists(registry):
    from pathlib import Path

    from streamlit import config
    from streamlit.testing.v1 import AppTest

    app = str(Path(__file__).resolve().parents[1] / "app.py")
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(app, default_timeout=120).run()
        assert not at.exception
        assert "make admin" in at.error[0].value and not at.metric  # no page ran
        access.create_first_admin("root", STRONG)
        at = AppTest.from_file(app, default_timeout=120).run()
        assert not at.exception and not at.error
        assert at.button(key="FormSubmitter:login_form-Sign in")  # the sign-in page, nothing else
        assert not at.metric
    finally:
        config.set_option("server.address", before)
    access.set_default_user(access.LOCAL)  # app.py set it for a server that requires sign-in


def claims(sub: str, **extra) -> dict:
    return {"iss": "http://localhost:5555", "sub": sub, "is_logged_in": True, "provider": "default", **extra}


def test_single_sign_on_maps_identities_to_accounts_and_roles(registry):
    """First admin rule, then the admins' default role; the same identity comes back to the same account."""
    first = access.sso_sign_in(claims("a-1", email="ada@example.com", preferred_username="ada"))
    assert (first.username, first.role) == ("ada", Role.ADMIN)
    assert access.sso_sign_in(claims("a-1", preferred_username="renamed")) == first  # the subject decides
    second = access.sso_sign_in(claims("b-2", email="ada@other.org", email_verified=True))
    assert (second.username, second.role) == ("ada-2", Role.VIEWER)  # ada is taken; the default role
    with access.acting_as(second), pytest.raises(Forbidden):
        access.set_sso_default_role("admin")
    with access.acting_as(first):
        access.set_sso_default_role("practitioner")
    third = access.sso_sign_in(claims("c-3", name="Cy Young"))
    assert (third.username, third.role) == ("Cy-Young", Role.PRACTITIONER)
    assert access.sso_actor(claims("c-3")) == third
    assert access.sso_actor(claims("c-3", iss="http://elsewhere")) is None  # same subject, other issuer: no one
    with access.acting_as(first):
        access.set_role("Cy-Young", "viewer")
    assert access.sso_actor(claims("c-3")).role == Role.VIEWER  # the role is read on every run
    with pytest.raises(store.AuthError, match="Wrong username or password"):
        access.login("ada", "")  # an account made by single sign-on has no password to guess
    from registry.audit import entries

    made = [(e.user, e.action, e.outcome) for e in entries() if "sso" in e.action and e.outcome == "ok"]
    assert made == [
        ("ada", "access.sso_signup", "ok"),
        ("ada-2", "access.sso_signup", "ok"),
        ("ada", "access.set_sso_default_role", "ok"),
        ("Cy-Young", "access.sso_signup", "ok"),
    ]
    assert [e.user for e in entries() if e.action == "access.set_sso_default_role" and e.outcome == "denied"] == [
        "ada-2"
    ]


def test_single_sign_on_links_an_email_only_when_the_provider_confirmed_it(registry):
    store.create_user("root", STRONG, "admin", email="root@example.com")
    with pytest.raises(store.AuthError, match="did not confirm"):
        access.sso_sign_in(claims("x", email="ROOT@example.com"))  # anyone could type that address
    linked = access.sso_sign_in(claims("r", email="root@example.com", email_verified=True))
    assert (linked.username, linked.role) == ("root", Role.ADMIN)
    with pytest.raises(store.AuthError, match="did not confirm"):
        access.sso_sign_in(claims("s", email="root@example.com", email_verified=True))  # linked to "r" already
    access.login("root", STRONG)  # the password still works
    for bad in ({"sub": "x"}, {"iss": "", "sub": "x"}, {"iss": "i", "sub": 5}, {"iss": "i", "sub": "x" * 600}):
        with pytest.raises(store.AuthError):
            access.sso_sign_in(bad)
    from registry.audit import entries

    assert [e.detail for e in entries() if e.action == "access.login" and e.outcome == "failed"][0].startswith("sso:")


def test_the_session_routes_set_an_httponly_cookie_for_a_one_time_code(registry):
    """serve.py's routes: the cookie is set by the server's response (HttpOnly, SameSite=Strict, 8 h), for a code
    that works once, within a minute, from the console's own pages; /close ends the session and clears it."""
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from views.session import COOKIE, session_routes

    store.create_user("root", STRONG, "admin")
    token, _ = access.login("root", STRONG)
    client = TestClient(Starlette(routes=session_routes()), follow_redirects=False)
    code = access.session_handoff(token)
    first = client.get("/_rmn/session/open", params={"code": code})
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "secure" not in cookie.lower()  # plain http on loopback; https gets Secure
    assert "set-cookie" not in client.get("/_rmn/session/open", params={"code": code}).headers  # spent
    assert "set-cookie" not in client.get("/_rmn/session/open", params={"code": "made-up"}).headers
    lured = access.session_handoff(token)
    cross = client.get("/_rmn/session/open", params={"code": lured}, headers={"Sec-Fetch-Site": "cross-site"})
    assert "set-cookie" not in cross.headers  # another site cannot sign this browser in
    stale = access.session_handoff(token)
    for key, (value, _) in list(access._handoffs.items()):
        access._handoffs[key] = (value, datetime.now(UTC) - timedelta(seconds=1))
    assert "set-cookie" not in client.get("/_rmn/session/open", params={"code": stale}).headers  # expired

    client.cookies.set(COOKIE, token)
    closed = client.get("/_rmn/session/close")
    assert closed.status_code == 303 and closed.headers["set-cookie"].startswith(f'{COOKIE}="";')
    assert access.session_actor(token) is None  # the server-side session is gone: a copied cookie is worthless
    late = access.session_handoff(token)
    assert "set-cookie" not in client.get("/_rmn/session/open", params={"code": late}).headers
