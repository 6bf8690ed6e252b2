"""Serving endpoints in the UI (AppTest) against a real OpenAI-compatible server: this console's own API on a
loopback port. Settings adds and checks an endpoint, Adapters deploys a trained tiny adapter to it, and the
Playground streams an answer from it that equals the console's in-process answer."""

from pathlib import Path

import pytest
from api_server import serve
from streamlit.testing.v1 import AppTest

from tests.tiny_model import build_tiny_model, train_tiny_adapter

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Map field 'adType' with value 'sp' from Amazon to RMIS."


@pytest.fixture
def server(registry, tmp_path, monkeypatch):
    """A tiny base model, one trained adapter ('mapper' v1) and the API serving them on a free loopback port."""
    from registry.datasets import write_records
    from registry.shapes import DatasetKind

    build_tiny_model(tmp_path / "models" / "tiny-llama", seed=23)
    monkeypatch.setenv("RMN_LORA_MODELS", str(tmp_path / "models"))
    rows = [{"instruction": PROMPT, "input": "", "output": "placement_type: sponsored_product"}] * 8
    write_records("mapper_sft", rows, DatasetKind.ALPACA, origin="test", registry=registry)
    train_tiny_adapter(
        "mapper", "mapper_sft", "tiny-llama", tmp_path / "job", steps=60, rank=8, max_seq_length=64, registry=registry
    )
    from api.app import create_app

    with serve(create_app()) as url:
        yield url


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "views" / f"{name}.py"), default_timeout=120).run()


def test_settings_adapters_and_playground_use_a_serving_endpoint(server):
    from services.deploy import list_endpoints, remote_models
    from services.federation import GenerationSettings
    from services.serving import stream_completion

    settings = page("settings")
    assert not settings.exception
    settings.text_input(key="endpoint_name").input("here")
    settings.text_input(key="endpoint_url").input(server)
    settings.selectbox(key="endpoint_engine").select("console")
    settings.button(key="FormSubmitter:endpoint_add-Save endpoint").click().run()
    assert not settings.exception and not settings.error, [e.value for e in settings.error]
    assert [(e.name, e.base_url, e.engine) for e in list_endpoints()] == [("here", server, "console")]
    settings.button(key="endpoint_check").click().run()
    assert "here answers and serves" in settings.success[0].value and "mapper@v1" in settings.success[0].value

    adapters = page("adapters")
    adapters.text_input(key="deploy_name_mapper_1").input("prod-mapper")
    adapters.button(key="deploy_go").click().run()
    assert not adapters.exception and not adapters.error, [e.value for e in adapters.error]
    assert "Deployed mapper v1 to here as prod-mapper" in adapters.toast[0].value.replace("\\", "")
    assert "prod-mapper" in remote_models("here")

    playground = page("playground")
    playground.radio(key="pg_kind").set_value("remote").run()
    playground.selectbox(key="pg_remote_model").select("prod-mapper")
    playground.text_area(key="pg_remote_prompt").input(PROMPT)
    playground.number_input(key="pg_gen_max_new_tokens").set_value(12).run()
    playground.button(key="pg_remote_run").click().run()
    assert not playground.exception and not playground.error, [e.value for e in playground.error]
    expected = "".join(stream_completion("mapper", PROMPT, GenerationSettings(max_new_tokens=12))).strip()
    shown = "".join(c.value for c in playground.code)
    assert expected.startswith("placement_type") and expected in shown
    tokens = {m.label: m.value for m in playground.metric}
    assert int(tokens["Tokens"]) >= 1 and int(tokens["Prompt tokens"]) > 5


def test_endpoint_errors_are_readable_and_roles_apply(server, refused_port):
    from registry.access import Actor, Role, acting_as
    from services.deploy import ServingEndpoint, deploy_adapter, save_endpoint, stream_on_endpoint
    from services.errors import ConsoleError, Forbidden

    save_endpoint(ServingEndpoint(name="down", url=f"http://127.0.0.1:{refused_port}"))
    with pytest.raises(ConsoleError, match="Could not reach down"):
        list(stream_on_endpoint("down", "mapper", PROMPT))
    save_endpoint(ServingEndpoint(name="here", url=server, engine="console"))
    with pytest.raises(ConsoleError, match="here refused the chat completion \\(404\\).*No model 'ghost'"):
        list(stream_on_endpoint("here", "ghost", PROMPT))
    with pytest.raises(ConsoleError, match="prompt is empty"):
        stream_on_endpoint("here", "mapper", " ")
    viewer = Actor(username="val", role=Role.VIEWER)
    with acting_as(viewer), pytest.raises(Forbidden, match="val may not serving.deploy"):
        deploy_adapter("mapper", endpoint="here")
    with acting_as(viewer), pytest.raises(Forbidden):
        save_endpoint(ServingEndpoint(name="x", url=server))

    playground = page("playground")
    playground.radio(key="pg_kind").set_value("remote").run()
    playground.selectbox(key="pg_endpoint").select("down").run()
    assert not playground.exception and "Could not reach down" in playground.error[0].value
