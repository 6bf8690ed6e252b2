"""The OpenAI-compatible endpoint, driven by the official `openai` client against uvicorn on a loopback port,
answering from a real tiny adapter and a saved federation (trained here with PEFT + TRL)."""

import httpx
import openai
import pytest
from api_server import serve

from tests.tiny_model import DEFAULT_CORPUS, build_tiny_model, train_tiny_adapter

MAP_PROMPTS = [
    f"Map field 'adType' with value '{code}' from {retailer} to RMIS."
    for code in ("sp", "sd")
    for retailer in ("Amazon", "Walmart", "Target")
]
PLAN_PROMPTS = [f"Plan a ${budget},000 campaign for snacks on Kroger." for budget in (5, 10, 20)]
MAP_ANSWER = "placement_type: sponsored_product"
PLAN_ANSWER = "Allocate: video 100%."


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry with two trained adapters (mapper, planner) and a saved gated federation of both."""
    import torch

    from registry.datasets import write_records
    from registry.layout import open_registry
    from registry.shapes import DatasetKind
    from services.federation import compose_federation, save_federation

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("openai")
    # Its own seed: the engine's cache is keyed by the weights' fingerprint, which leaves out the tokenizer, so
    # another test file's tiny model with the same seed (same weights, another corpus) would be served instead.
    base = build_tiny_model(root / "models" / "tiny-llama", corpus=DEFAULT_CORPUS + PLAN_PROMPTS, seed=16)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        patch.setenv("RMN_LORA_MODELS", str(root / "models"))
        registry = open_registry()
        for name, prompts, answer in [("mapper", MAP_PROMPTS, MAP_ANSWER), ("planner", PLAN_PROMPTS, PLAN_ANSWER)]:
            rows = [{"instruction": p, "input": "", "output": answer} for p in prompts] * 4
            write_records(f"{name}_sft", rows, DatasetKind.ALPACA, origin="test", registry=registry)
            rank = 8 if name == "planner" else 4
            train_tiny_adapter(
                name, f"{name}_sft", "tiny-llama", root / "jobs" / name, steps=160, rank=rank, registry=registry
            )
        federation = save_federation(
            compose_federation(retailer_adapter="mapper", task_adapter="planner", method="gated", name="router")
        )
        from api.app import create_app

        with serve(create_app()) as url:
            yield {"url": url, "federation": federation, "registry": registry, "base": base}
    torch.set_num_threads(threads)


@pytest.fixture
def client(world):
    return openai.OpenAI(base_url=f"{world['url']}/v1", api_key="unused-on-loopback", max_retries=0)


def in_process(model: str, prompt: str, **settings) -> str:
    from services.federation import GenerationSettings
    from services.serving import stream_completion

    return "".join(stream_completion(model, prompt, GenerationSettings(**settings))).strip()


def test_models_lists_bases_adapters_and_saved_federations(client, world):
    models = {m.id: m for m in client.models.list()}
    assert {"tiny-llama", "mapper", "mapper@v1", "planner", "planner@v1", world["federation"].id} <= set(models)
    assert models["mapper"].model_extra["kind"] == "adapter" and models["mapper"].model_extra["parent"] == "tiny-llama"
    assert models[world["federation"].id].model_extra["kind"] == "federation"


def test_chat_streams_from_an_adapter(client):
    stream = client.chat.completions.create(
        model="mapper",
        messages=[{"role": "user", "content": MAP_PROMPTS[0]}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=24,
    )
    chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) > 1, "the answer must arrive in several chunks"
    answer = "".join(texts).strip()
    assert answer == MAP_ANSWER
    assert answer == in_process("mapper", MAP_PROMPTS[0], max_new_tokens=24)
    assert chunks[0].choices[0].delta.role == "assistant"
    usage = chunks[-1].usage
    # The tiny model pads after its answer instead of ending it, so it may run to the limit.
    finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
    assert finish == ("length" if usage.completion_tokens == 24 else "stop")
    assert usage.prompt_tokens > 5 and usage.completion_tokens > 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_chat_streams_from_a_saved_federation(client, world):
    from services.federation import test_federation

    federation = world["federation"]
    for prompt, expected in [(MAP_PROMPTS[3], MAP_ANSWER), (PLAN_PROMPTS[1], PLAN_ANSWER)]:
        stream = client.chat.completions.create(
            model=federation.id, messages=[{"role": "user", "content": prompt}], stream=True, max_tokens=24
        )
        answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()
        assert answer == expected, (prompt, answer)
        assert answer == test_federation(federation.id, prompt, max_new_tokens=24).response


def test_adapter_and_base_answer_differently_and_usage_is_counted(client):
    adapter = client.chat.completions.create(
        model="mapper@v1",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": MAP_PROMPTS[1]}],
        max_tokens=8,
    )
    base = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": MAP_PROMPTS[1]}], max_tokens=8
    )
    assert adapter.choices[0].message.content != base.choices[0].message.content
    assert adapter.choices[0].message.content == in_process(
        "mapper", MAP_PROMPTS[1], max_new_tokens=8, system="Be brief."
    )
    assert base.usage.completion_tokens == 8 and base.choices[0].finish_reason == "length"
    assert adapter.usage.prompt_tokens > base.usage.prompt_tokens, "the system message is part of the prompt"


CHAT = [
    {"role": "system", "content": "You map retail media fields."},
    {"role": "user", "content": MAP_PROMPTS[0]},
    {"role": "assistant", "content": MAP_ANSWER},
    {"role": "developer", "content": "Answer in one line."},
    {"role": "user", "content": MAP_PROMPTS[4]},
]


def test_a_multi_turn_chat_goes_through_the_chat_template_whole(client, world):
    """Every message reaches the model: the answer and the prompt token count equal plain transformers (+ PEFT)
    generating greedily from the chat template applied to the whole conversation (system messages first), and
    the earlier turns change the answer (the mapper, trained on single turns, answers the last turn alone)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.adapters import get_adapter

    tokenizer = AutoTokenizer.from_pretrained(world["base"])
    templated = [
        {"role": "system", "content": "You map retail media fields.\n\nAnswer in one line."},
        *[m for m in CHAT if m["role"] in {"user", "assistant"}],
    ]
    ids = tokenizer.apply_chat_template(templated, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    prompt_tokens = ids["input_ids"].shape[1]
    for model_id in ("tiny-llama", "mapper"):
        model = AutoModelForCausalLM.from_pretrained(world["base"])
        if model_id == "mapper":
            model = PeftModel.from_pretrained(model, get_adapter("mapper").path)
        with torch.inference_mode():
            output = model.eval().generate(**ids, max_new_tokens=12, do_sample=False)
        expected = tokenizer.decode(output[0, prompt_tokens:], skip_special_tokens=True)

        whole = client.chat.completions.create(model=model_id, messages=CHAT, max_tokens=12)
        assert whole.choices[0].message.content == expected, model_id
        assert whole.usage.prompt_tokens == prompt_tokens
        chunks = list(
            client.chat.completions.create(
                model=model_id, messages=CHAT, max_tokens=12, stream=True, stream_options={"include_usage": True}
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
        assert chunks[-1].usage.prompt_tokens == prompt_tokens
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

    last_turn_only = client.chat.completions.create(model="mapper", messages=CHAT[-1:], max_tokens=24)
    assert last_turn_only.usage.prompt_tokens < prompt_tokens
    assert last_turn_only.choices[0].message.content.strip() == MAP_ANSWER
    assert expected.strip() != MAP_ANSWER, "the earlier turns reach the model and change its answer"

    federated = client.chat.completions.create(model=world["federation"].id, messages=CHAT, max_tokens=12)
    assert federated.usage.prompt_tokens == prompt_tokens, "a federation reads the whole chat too"


def test_a_stream_is_one_event_per_piece_in_openais_order(world):
    """The wire format as an SSE parser sees it: the first event names the assistant and carries the first text,
    then one event per piece, the finish reason, the usage, [DONE]; the pieces are the whole answer."""
    import json

    body = {
        "model": "mapper",
        "messages": [{"role": "user", "content": MAP_PROMPTS[0]}],
        "max_tokens": 24,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.Client(base_url=world["url"], timeout=120) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            assert "content-length" not in response.headers
            data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    events = [json.loads(item) for item in data[:-1]]
    *pieces, finish, usage = events
    assert pieces[0]["choices"][0]["delta"]["role"] == "assistant" and pieces[0]["choices"][0]["delta"]["content"]
    assert all("role" not in e["choices"][0]["delta"] and e["choices"][0]["finish_reason"] is None for e in pieces[1:])
    answer = "".join(e["choices"][0]["delta"]["content"] for e in pieces)
    assert answer.strip() == in_process("mapper", MAP_PROMPTS[0], max_new_tokens=24)
    assert finish["choices"][0]["delta"] == {} and finish["choices"][0]["finish_reason"] in {"stop", "length"}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] >= len(pieces) > 1
    assert len({e["id"] for e in events}) == 1, "every event of one answer has its id"


def test_a_stream_that_cannot_open_is_a_json_error_not_an_event(client, world):
    """A streamed request for a model that does not exist (or an empty prompt) gets the status and JSON error a
    whole one gets, before any event."""
    with pytest.raises(openai.NotFoundError, match="GET /v1/models lists"):
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.completions.create(model="mapper", prompt="  ", stream=True)
    with httpx.Client(base_url=world["url"], timeout=60) as http:
        refused = http.post("/v1/chat/completions", json={"model": "ghost", "stream": True, "messages": [
            {"role": "user", "content": "hi"}]})  # fmt: skip
    assert refused.status_code == 404 and refused.headers["content-type"] == "application/json"
    assert "GET /v1/models lists" in refused.json()["error"]["message"]


def test_completions_streamed_and_not(client):
    whole = client.completions.create(model="planner", prompt=PLAN_PROMPTS[0], max_tokens=32)
    assert whole.choices[0].text.strip() == PLAN_ANSWER and whole.usage.completion_tokens > 1
    parts = list(client.completions.create(model="planner", prompt=PLAN_PROMPTS[0], max_tokens=32, stream=True))
    assert "".join(p.choices[0].text for p in parts).strip() == PLAN_ANSWER


def test_bad_requests_are_openai_errors(client, world):
    with pytest.raises(openai.NotFoundError, match="GET /v1/models lists"):
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="last message must be the user's"):
        client.chat.completions.create(
            model="mapper",
            messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        )
    with pytest.raises(openai.BadRequestError, match="does not run tools; message\\(s\\) 2"):
        client.chat.completions.create(
            model="mapper",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "tool", "content": "42", "tool_call_id": "call_1"},
                {"role": "user", "content": "again"},
            ],
        )
    with pytest.raises(openai.BadRequestError, match="n other than 1"):
        client.chat.completions.create(model="mapper", messages=[{"role": "user", "content": "hi"}], n=2)
    with pytest.raises(openai.BadRequestError, match="stop sequences"):
        client.completions.create(model="mapper", prompt="hi", stop=["\n"])
    with pytest.raises(openai.UnprocessableEntityError, match="temperature"):
        client.chat.completions.create(model="mapper", messages=[{"role": "user", "content": "hi"}], temperature=3)
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.completions.create(model="mapper", prompt="  ")


def test_the_console_accepts_vllms_load_lora_adapter_call(world, client):
    from training.adapters import get_adapter

    path = str(get_adapter("planner", 1).path)
    with httpx.Client(base_url=world["url"], timeout=60) as http:
        loaded = http.post("/v1/load_lora_adapter", json={"lora_name": "prod-planner", "lora_path": path})
        assert loaded.status_code == 200, loaded.text
        assert "prod-planner" in {m.id for m in client.models.list()}
        answer = client.chat.completions.create(
            model="prod-planner", messages=[{"role": "user", "content": PLAN_PROMPTS[2]}], max_tokens=32
        )
        assert answer.choices[0].message.content == PLAN_ANSWER
        outside = http.post("/v1/load_lora_adapter", json={"lora_name": "evil", "lora_path": str(world["base"])})
        assert outside.status_code == 400 and "not an adapter version folder" in outside.json()["error"]["message"]
        assert http.post("/v1/unload_lora_adapter", json={"lora_name": "prod-planner"}).status_code == 200
        assert http.post("/v1/unload_lora_adapter", json={"lora_name": "prod-planner"}).status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="prod-planner", messages=[{"role": "user", "content": "hi"}])


def test_a_client_that_hangs_up_mid_stream_frees_the_model(client):
    """Closing a stream early must stop generation and release the model's lock for the next request."""
    stream = client.chat.completions.create(
        model="mapper", messages=[{"role": "user", "content": MAP_PROMPTS[0]}], stream=True, max_tokens=512
    )
    next(iter(stream))
    stream.close()
    again = client.chat.completions.create(
        model="mapper", messages=[{"role": "user", "content": MAP_PROMPTS[0]}], max_tokens=24, timeout=120
    )
    assert again.choices[0].message.content == MAP_ANSWER


def test_deploy_loads_an_adapter_into_a_running_server_over_http(world, refused_port):
    """The console's deploy client (httpx) against a real OpenAI-compatible server: this console's own."""
    from services.deploy import ServingEndpoint, complete_on_endpoint, deploy_adapter, remote_models, save_endpoint
    from services.errors import ConsoleError

    save_endpoint(ServingEndpoint(name="here", url=world["url"], engine="console"))
    with httpx.Client(base_url=world["url"], timeout=60) as http:
        deployed = http.post("/adapters/planner/versions/1/deploy", json={"endpoint": "here", "lora_name": "plan-prod"})
        assert deployed.status_code == 200, deployed.text
        assert deployed.json()["lora_path"].endswith("adapters/planner/v1")
    assert "plan-prod" in remote_models("here")
    answer = complete_on_endpoint("here", "plan-prod", PLAN_PROMPTS[0], None)
    assert answer.text == PLAN_ANSWER and answer.completion_tokens > 1

    default_name = deploy_adapter("mapper", endpoint="here")
    assert default_name.lora_name == "mapper@v1"

    save_endpoint(ServingEndpoint(name="down", url=f"http://127.0.0.1:{refused_port}"))
    with pytest.raises(ConsoleError, match="Could not reach down"):
        deploy_adapter("mapper", endpoint="down")
    save_endpoint(ServingEndpoint(name="mounted", url=world["url"], adapter_root="/mnt/registry/adapters"))
    with pytest.raises(ConsoleError, match="refused POST /v1/load_lora_adapter \\(400\\).*not an adapter version"):
        deploy_adapter("mapper", endpoint="mounted")
    with httpx.Client(base_url=world["url"], timeout=60) as http:
        unknown = http.post("/adapters/mapper/versions/1/deploy", json={"endpoint": "nowhere"})
        assert unknown.status_code == 404 and "No serving endpoint" in unknown.json()["error"]["message"]
        listed = http.get("/serving/endpoints").json()
        assert [e["name"] for e in listed["items"]] == ["here", "down", "mounted"]
        bad = http.post("/serving/endpoints", json={"name": "x", "url": "not a url"})
        assert bad.status_code == 422


def test_api_requests_are_logged_as_the_apis(client, world):
    """Each completion the API serves is one request-log record with caller "api" and the usage it reported;
    a Playground run of the same adapter is logged as the Playground's."""
    from federation.request_log import request_log
    from services.monitoring import request_records
    from services.playground import Target, start_run

    log = request_log()
    log.flush()
    before = len(request_records())
    answer = client.chat.completions.create(
        model="planner", messages=[{"role": "user", "content": PLAN_PROMPTS[0]}], max_tokens=7
    )
    failed = client.chat.completions.create  # a request the engine refuses is logged too, with its error
    with pytest.raises(openai.BadRequestError, match="context holds"):
        failed(model="planner", messages=[{"role": "user", "content": "plan " * 400}], max_tokens=900)
    for _ in start_run(Target(kind="adapter", ref="planner"), PLAN_PROMPTS[1], None):
        pass
    log.flush()
    served, refused, playground = request_records()[before:]
    assert served.caller == "api" and served.ok and served.target == "planner v1"
    assert (served.prompt_tokens, served.completion_tokens) == (
        answer.usage.prompt_tokens,
        answer.usage.completion_tokens,
    )
    assert refused.caller == "api" and not refused.ok and "context holds" in refused.error
    assert playground.caller == "playground" and playground.target == "planner v1"
