"""A viewer walks every page and finds no write control: the pages ask the services (`may`) before they draw one,
and the services still refuse the call when it is made directly."""

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.full_registry import build_full_registry

ROOT = Path(__file__).resolve().parents[1]
STRONG = "Correct-Horse-42"
# The pages are what app.py's navigation lists (views/ also holds helper modules), except the sign-in page.
PAGES = sorted(set(re.findall(r'st\.Page\(\s*"views/(\w+\.py)"', (ROOT / "app.py").read_text())) - {"login.py"})
# The only buttons a viewer may press: reading, running inference, moving through the wizard, signing out.
READ_ONLY = {
    "sign_out",
    "fed_load",
    "fed_run",
    "ab_run",
    "test_mapping",
    "package_check",
    "pg_history_load",
    "pg_run",
    "wizard_back",
    "wizard_next",
    "pg_remote_run",
    "endpoint_check",
}
# Writes every role may make to its own account: its API tokens.
OWN_ACCOUNT = {"FormSubmitter:api_token_create-Create token", "api_token_revoke"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        patch.setenv("RMN_LORA_MODELS", str(root / "models"))
        home = build_full_registry(root, runs=True)
        from registry.access import create_user

        create_user("root", STRONG, "admin")
        create_user("val", STRONG, "viewer")
        create_user("pat", STRONG, "practitioner")
        yield home


def signed_in(username: str, page: str) -> AppTest:
    from services.access import login

    token, _ = login(username, STRONG)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["session_token"] = token
    at.run()
    return at.switch_page(f"views/{page}").run()


def buttons(at: AppTest) -> list[tuple[str, str, bool]]:
    """(key, label, disabled) of every button and form submit button drawn."""
    return [(str(b.key or ""), b.label, b.disabled) for b in at.button]


def writes(at: AppTest) -> list[tuple[str, str]]:
    enabled = [(key, label) for key, label, disabled in buttons(at) if not disabled]
    return [
        (key, label)
        for key, label in enabled
        if key not in READ_ONLY | OWN_ACCOUNT
        and not key.startswith(("fed_sample_", "retry_"))
        and label != "Apply preset"
    ]


@pytest.fixture
def as_world(world, monkeypatch):
    monkeypatch.setenv("RMN_LORA_HOME", str(world))
    monkeypatch.setenv("RMN_LORA_MODELS", str(world.parent / "models"))
    yield world
    from services.access import LOCAL, set_default_user

    set_default_user(LOCAL)  # app.py set it for a server that requires sign-in


@pytest.mark.parametrize("page", PAGES)
def test_a_viewer_finds_no_write_control_on_any_page(as_world, page):
    if page == "audit.py":  # not even in a viewer's navigation
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            signed_in("val", page)
        return
    at = signed_in("val", page)
    assert not at.exception, [e.value for e in at.exception]
    assert writes(at) == [], page
    assert not at.get("file_uploader")


@pytest.mark.parametrize("page", ["adapters.py", "models.py", "settings.py", "schema_mappings.py", "playground.py"])
def test_the_same_pages_give_writers_their_controls(as_world, page):
    """The walk above can fail: a practitioner (an admin on Settings) sees write controls on the same pages."""
    at = signed_in("root" if page == "settings.py" else "pat", page)
    assert not at.exception, [e.value for e in at.exception]
    assert writes(at), page


def test_the_services_refuse_what_the_pages_hide(as_world):
    from registry.errors import Forbidden
    from services import evaluation, models, playground, settings
    from services.access import acting_as, login, may, session_actor
    from services.deploy import ServingEndpoint, save_endpoint
    from services.federation import delete_federation, list_federations
    from services.mappings import save_mapping
    from services.training import delete_adapter, job_manager

    token, _ = login("val", STRONG)
    viewer = session_actor(token)
    fed = list_federations()[0].id
    calls = {
        "adapters.delete": lambda: delete_adapter("mapper", 1),
        "federations.delete": lambda: delete_federation(fed),
        "playground.clear_history": playground.clear_history,
        "models.publish": lambda: models.publish("mapper@v1", merge=False, name="again"),
        "models.update": lambda: models.update_model("mapper", "adapter", description="x"),
        "models.delete": lambda: models.delete_model("mapper-lora", "package"),
        "settings.update": lambda: settings.update_settings(page_size=10),
        "evaluations.run": lambda: evaluation.run_evaluation("mapper@v1", "alpha_sft", limit=1),
        "evaluations.cancel": lambda: evaluation.cancel_evaluation(evaluation.list_evaluations()[0].id),
        "jobs.restart": lambda: job_manager().restart(job_manager().all_jobs()[0].id),
        "mappings.save": lambda: save_mapping("amazon: {}"),
        "serving.save_endpoint": lambda: save_endpoint(ServingEndpoint(name="x", url="http://127.0.0.1:9")),
    }
    with acting_as(viewer):
        for action, call in calls.items():
            with pytest.raises(Forbidden, match=f"val may not {action.replace('_', ' ')}"):
                call()
        assert not may(delete_adapter) and not may(job_manager().cancel)
    with pytest.raises(TypeError, match="not a guarded"):
        may(playground.list_history)  # a page can only ask about a write the services check
    from registry.audit import entries

    denied = {e.action for e in entries() if e.user == "val" and e.outcome == "denied"}
    assert set(calls) <= denied
