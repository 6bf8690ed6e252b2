"""Per-user API tokens: hashed at rest and shown once, mapped to the console's users and roles over real HTTP
(httpx and the official openai client against uvicorn on a loopback port), managed by users, admins and the CLI."""

import json
import subprocess
import sys

import openai
import pytest
from api_server import api_client, serve

PASSWORD = "Correct-Horse-42"


@pytest.fixture
def people(registry):
    from registry.access import Role, create_user

    for name, role in [("boss", Role.ADMIN), ("pat", Role.PRACTITIONER), ("val", Role.VIEWER)]:
        create_user(name, PASSWORD, role)
    return registry


def as_user(name: str):
    from registry.access import Actor, Role, acting_as, list_users

    role = next(u.role for u in list_users() if u.username == name)
    return acting_as(Actor(username=name, role=Role(role)))


def make_token(owner: str, for_user: str | None = None, name: str = "script") -> str:
    from services.api_tokens import create_token

    with as_user(owner):
        return create_token(for_user or owner, name)[0]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_is_stored_only_as_its_hash_and_follows_its_user(people):
    from registry.access import delete_user, set_role
    from registry.api_tokens import create_token, list_tokens, revoke_token, token_actor

    token, record = create_token("VAL", "nightly retrain")
    assert token.startswith(f"rmn_{record.id}_") and record.username == "val"
    stored = (people.access / "api_tokens.json").read_text()
    assert token not in stored and token.split("_", 2)[2] not in stored and record.sha256 in stored
    actor, found = token_actor(token)
    assert (actor.username, actor.role.value, found.id) == ("val", "viewer", record.id)
    assert list_tokens("val")[0].last_used is not None
    assert token_actor(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert token_actor("rmn_00000000_" + "x" * 43) is None and token_actor("Bearer") is None

    set_role("val", "practitioner")
    assert token_actor(token)[0].role.value == "practitioner", "a role change applies to live tokens at once"
    revoke_token(record.id)
    assert token_actor(token) is None

    second, _ = create_token("pat", "ci")
    delete_user("pat")
    assert token_actor(second) is None, "a deleted account's tokens stop working"
    with pytest.raises(Exception, match="No user named 'ghost'"):
        create_token("ghost", "x")
    with pytest.raises(Exception, match="Name the token"):
        create_token("boss", "  ")


def test_users_manage_their_own_tokens_and_admins_everyones(people):
    from services.api_tokens import create_token, list_tokens, revoke_token
    from services.errors import Forbidden

    with as_user("val"):
        _, own = create_token("val", "laptop")
        with pytest.raises(Forbidden, match="val may not create API tokens of pat"):
            create_token("pat", "sneaky")
        assert [t.id for t in list_tokens()] == [own.id]
        with pytest.raises(Forbidden):
            list_tokens("pat")
    with as_user("pat"):
        _, pats = create_token("pat", "ci")
        with pytest.raises(Forbidden, match="pat may not revoke"):
            revoke_token(own.id)
    with as_user("boss"):
        _, for_val = create_token("val", "made by an admin")
        assert {t.id for t in list_tokens()} == {own.id, pats.id, for_val.id}
        revoke_token(pats.id)
    from services.access import audit_entries

    with as_user("boss"):
        actions = [(e.user, e.action, e.target, e.outcome) for e in audit_entries()]
    assert ("val", "api_tokens.create", "pat", "denied") in actions
    assert ("boss", "api_tokens.create", "val", "ok") in actions and (
        "boss",
        "api_tokens.revoke",
        "pat",
        "ok",
    ) in actions


def test_the_api_acts_as_the_tokens_user_with_the_consoles_roles(people):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from services.access import set_role
    from services.api_tokens import revoke_token

    viewer, practitioner = make_token("val"), make_token("pat")
    upload = {"files": {"file": ("a.jsonl", b'{"instruction": "q", "output": "a"}\n')}, "data": {"name": "a"}}
    with api_client(create_app()) as client:
        missing = client.get("/datasets")
        assert missing.status_code == 401 and "this console has user accounts" in missing.json()["error"]["message"]
        for header in ("Bearer rmn_00000000_" + "x" * 43, "Bearer nonsense", "Basic Ym9zczpwdw=="):
            refused = client.get("/datasets", headers={"Authorization": header})
            assert refused.status_code == 401 and refused.json()["error"]["type"] == "AuthError", header

        assert client.get("/datasets", headers=bearer(viewer)).json()["total"] == 0
        forbidden = client.post("/datasets/upload", headers=bearer(viewer), **upload)
        assert forbidden.status_code == 403 and "val may not datasets.upload" in forbidden.json()["error"]["message"]
        adapter_call = client.post(
            "/v1/load_lora_adapter", headers=bearer(viewer), json={"lora_name": "x", "lora_path": "/tmp"}
        )
        assert adapter_call.status_code == 403, "loading adapters into the server needs a practitioner"
        assert client.post("/datasets/upload", headers=bearer(practitioner), **upload).status_code == 201
        assert client.get("/datasets", headers=bearer(viewer)).json()["items"][0]["name"] == "a"

        with as_user("boss"):
            set_role("val", "practitioner")
            upload["data"] = {"name": "b"}
            assert client.post("/datasets/upload", headers=bearer(viewer), **upload).status_code == 201
            from services.api_tokens import list_tokens

            revoke_token(next(t.id for t in list_tokens("val")))
        assert client.get("/datasets", headers=bearer(viewer)).status_code == 401

        v1 = str(client.base_url).rstrip("/") + "/v1"
        models = openai.OpenAI(base_url=v1, api_key=practitioner, max_retries=0).models.list()
        assert all(m.object == "model" for m in models.data), "the practitioner's token is accepted"
        with pytest.raises(openai.AuthenticationError, match="unknown or was revoked"):
            openai.OpenAI(base_url=v1, api_key=viewer, max_retries=0).models.list()

    remote = TestClient(create_app(), client=("203.0.113.9", 50000))
    assert remote.get("/datasets").status_code == 401
    assert remote.get("/datasets", headers=bearer(practitioner)).status_code == 200

    from registry.audit import entries

    uploads = [(e.user, e.role, e.outcome) for e in entries() if e.action == "datasets.upload"]
    assert uploads == [("val", "viewer", "denied"), ("pat", "practitioner", "ok"), ("val", "practitioner", "ok")]


def test_an_open_console_answers_this_machine_without_a_token(registry):
    """No accounts and a loopback caller: open, as the pages are; the openai client's placeholder key is ignored."""
    from api.app import create_app

    with serve(create_app()) as url:
        listed = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0).models.list()
        assert all(m.object == "model" for m in listed.data)
        with api_client(create_app()) as client:
            assert client.get("/datasets").status_code == 200
            assert client.get("/datasets", headers=bearer("rmn_00000000_" + "x" * 43)).status_code == 401


def test_the_cli_prints_a_token_once_and_lists_and_revokes_without_it(people):
    from registry.api_tokens import token_actor

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "services.api_tokens", *args], capture_output=True, text=True, timeout=600
        )

    made = cli("create", "pat", "--name", "nightly retrain")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    actor, record = token_actor(token)
    assert actor.username == "pat" and record.name == "nightly retrain"
    listed = cli("list")
    assert record.id in listed.stdout and "nightly retrain" in listed.stdout and token not in listed.stdout
    assert cli("create", "ghost", "--name", "x").returncode == 2
    assert cli("revoke", record.id).returncode == 0 and token_actor(token) is None
    assert "No API token" in cli("revoke", record.id).stderr
    assert json.loads((people.access / "api_tokens.json").read_text())["tokens"] == {}


def _page(token: str):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    at.session_state["session_token"] = token
    at.run()
    return at.switch_page("views/api_tokens.py").run()


def test_the_api_tokens_page_makes_shows_once_and_revokes(people):
    """A viewer makes a token for themself (shown once, then only its id), it works over the API's token check,
    and revoking it on the page ends it; an admin picks the user and sees everyone's tokens."""
    from registry.access import LOCAL, login, set_default_user
    from registry.api_tokens import list_tokens, token_actor

    try:
        session, _ = login("val", PASSWORD)
        at = _page(session)
        assert not at.exception and at.title[0].value == ":material/key: API tokens"
        assert [t.value for t in at.text_input if t.label == "For user"] == ["val"]
        at.text_input[0].input("laptop")
        at.button(key="FormSubmitter:api_token_create-Create token").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        token = at.code[0].value
        actor, record = token_actor(token)
        assert actor.username == "val" and record.name == "laptop"
        at.run()
        assert not at.code, "the token is shown once"
        assert at.dataframe[0].value["Id"].tolist() == [record.id]
        at.button(key="api_token_revoke").click().run()
        assert not at.exception and token_actor(token) is None and list_tokens() == []

        admin_session, _ = login("boss", PASSWORD)
        at = _page(admin_session)
        at.text_input[0].input("ci for pat")
        at.selectbox[0].select("pat")
        at.button(key="FormSubmitter:api_token_create-Create token").click().run()
        assert not at.exception and token_actor(at.code[0].value)[0].username == "pat"
        assert at.subheader[-1].value == "Everyone's tokens"
    finally:
        set_default_user(LOCAL)  # app.py set it for a console that requires sign-in
