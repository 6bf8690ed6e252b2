"""Evaluations whose target is an OpenAI-compatible endpoint: this console's own server, on uvicorn on a free
loopback port, serving a tiny adapter trained here. The rows must equal the local target's for greedy decoding,
the API key is read from the environment and never written, and an unreachable server fails the run readably."""

import json

import httpx
import pytest
from api_server import serve

from tests.tiny_model import DEFAULT_CORPUS, build_tiny_model, train_tiny_adapter

PROMPTS = [
    f"Map field 'adType' with value '{code}' from {retailer} to RMIS."
    for code in ("sp", "sd")
    for retailer in ("Amazon", "Walmart", "Target")
]
ANSWER = "placement_type: sponsored_product"
SECRET = "sk-test-0123456789abcdef"  # what a user's key looks like: it must never reach a file


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry with a tiny base model, a 'mapper' adapter and two evaluation sets (one with a system message,
    OpenAI chat shaped), served by this console's API on a loopback port."""
    import torch

    from registry.datasets import write_records
    from registry.layout import open_registry
    from registry.shapes import DatasetKind

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("remote-eval")
    # A seed of its own: the engine caches models by weights, and another module's tokenizer must not answer.
    build_tiny_model(root / "models" / "tiny-llama", corpus=DEFAULT_CORPUS + PROMPTS, seed=1616)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        patch.setenv("RMN_LORA_MODELS", str(root / "models"))
        registry = open_registry()
        train = [{"instruction": p, "input": "", "output": ANSWER} for p in PROMPTS]
        write_records("mapper_sft", train * 4, DatasetKind.ALPACA, origin="test", registry=registry)
        rows = [{"prompt": p, "reference": ANSWER} for p in PROMPTS]
        write_records("mapper_eval", rows, DatasetKind.EVALUATION, origin="test", registry=registry)
        chats = [
            {
                "messages": [
                    {"role": "system", "content": "You map retail media fields to RMIS."},
                    {"role": "user", "content": p},
                    {"role": "assistant", "content": ANSWER},
                ]
            }
            for p in PROMPTS[:4]
        ]
        write_records("mapper_chat", chats, DatasetKind.CHAT, origin="test", registry=registry)
        train_tiny_adapter("mapper", "mapper_sft", "tiny-llama", root / "jobs" / "mapper", steps=60, registry=registry)
        from api.app import create_app

        with serve(create_app()) as url:
            yield {"url": url, "root": root, "registry": registry, "patch": patch}
    torch.set_num_threads(threads)


def _run(target, dataset, **options):
    from services.evaluation import get_evaluation, run_evaluation, wait_for_evaluation

    run_id = run_evaluation(target, dataset, metrics=["exact_match", "token_f1"], max_new_tokens=24, **options)
    state = wait_for_evaluation(run_id, timeout=600)
    return state, get_evaluation(run_id)


SCORED = ("index", "prompt", "reference", "prediction", "exact_match", "token_f1", "tokens")


@pytest.mark.parametrize("dataset", ["mapper_eval", "mapper_chat"])
def test_an_endpoint_target_scores_what_the_local_target_scores(world, dataset):
    from services.deploy import ServingEndpoint, save_endpoint

    save_endpoint(ServingEndpoint(name="here", url=world["url"], engine="console"))
    local_state, local = _run("mapper@v1", dataset, batch_size=1)
    remote_state, remote = _run("mapper@v1", dataset, endpoint="here", batch_size=3)
    assert local_state.status.value == "completed", local_state.error
    assert remote_state.status.value == "completed", remote_state.error
    assert remote["target_label"] == "mapper@v1 on here (endpoint)"
    assert local["cost_usd"] is not None and remote["cost_usd"] is None  # another server's price is not ours
    assert remote["target"] == "endpoint:here/mapper@v1"
    assert len(remote["rows"]) == len(local["rows"]) > 0
    for ours, theirs in zip(local["rows"], remote["rows"], strict=True):
        assert {k: theirs[k] for k in SCORED} == {k: ours[k] for k in SCORED}
        assert theirs["latency_ms"] > 0 and theirs["first_token_ms"] is not None
    if dataset == "mapper_eval":  # trained without a system message, it answers the plain prompts exactly
        assert any(row["exact_match"] for row in remote["rows"]), "the adapter answers some prompts exactly"
    for metric in ("exact_match", "token_f1"):
        assert remote["metrics"][metric] == local["metrics"][metric]
    # the A/B of the two (Compare on the Evaluations page): paired tests, and no example answered differently
    from services.evaluation import compare_evaluations

    comparison = compare_evaluations([local_state.id, remote_state.id])
    assert comparison.table[1]["target"] == "mapper@v1 on here (endpoint)"
    assert comparison.tests and comparison.changed == []


def test_a_server_url_with_a_key_from_the_environment_never_writes_the_key(world, monkeypatch):
    monkeypatch.setenv("REMOTE_EVAL_KEY", SECRET)
    state, result = _run("mapper", "mapper_eval", endpoint=world["url"] + "/", api_key_env="REMOTE_EVAL_KEY", limit=2)
    assert state.status.value == "completed", state.error
    assert state.config.target.endpoint.api_key_env == "REMOTE_EVAL_KEY"
    assert result["rows"][0]["prediction"]
    folder = world["root"] / "registry" / "evaluations" / state.id
    written = "".join(path.read_text() for path in folder.rglob("*") if path.is_file())
    assert "REMOTE_EVAL_KEY" in written and SECRET not in written


def test_an_unreachable_endpoint_fails_the_run_and_says_what_to_do(world, refused_port):
    state, result = _run("mapper", "mapper_eval", endpoint=f"http://127.0.0.1:{refused_port}", limit=2)
    assert state.status.value == "failed"
    assert "Could not reach" in state.error and "Check that the server is running" in state.error
    assert result["rows"] == []


def test_bad_endpoint_targets_are_refused_at_submit_and_queue_nothing(world, monkeypatch):
    from services.deploy import ServingEndpoint, save_endpoint
    from services.errors import ConsoleError
    from services.evaluation import list_evaluations, run_evaluation

    save_endpoint(ServingEndpoint(name="here", url=world["url"], engine="console"))
    before = len(list_evaluations())
    monkeypatch.delenv("UNSET_EVAL_KEY", raising=False)
    cases = [
        ({"endpoint": "nowhere"}, "No serving endpoint named 'nowhere'"),
        ({"endpoint": "here", "metrics": ["perplexity"]}, "perplexity needs"),
        ({"endpoint": world["url"], "api_key_env": SECRET}, "names an environment variable"),
        ({"endpoint": world["url"], "api_key_env": "UNSET_EVAL_KEY"}, "$UNSET_EVAL_KEY, which is unset"),
        ({"endpoint": "ftp://example.org"}, "is not a server URL"),
    ]
    for options, words in cases:
        with pytest.raises(ConsoleError, match=words.replace("$", r"\$")):
            run_evaluation("mapper", "mapper_eval", **options)
    with pytest.raises(ConsoleError, match="Name the model"):
        run_evaluation(" ", "mapper_eval", endpoint="here")
    assert len(list_evaluations()) == before
    assert SECRET not in json.dumps([r.model_dump(mode="json") for r in list_evaluations()])


def test_post_evaluations_targets_an_endpoint_over_http(world):
    with httpx.Client(base_url=world["url"], timeout=120) as http:
        body = {"target": "mapper@v1", "endpoint": world["url"], "dataset": "mapper_eval", "limit": 3}
        created = http.post("/evaluations", json={**body, "metrics": ["exact_match"]})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        from services.evaluation import wait_for_evaluation

        assert wait_for_evaluation(run_id, timeout=600).status.value == "completed"
        detail = http.get(f"/evaluations/{run_id}").json()
        assert detail["target"].startswith("endpoint:127.0.0.1-") and detail["target"].endswith("/mapper@v1")
        assert [row["index"] for row in detail["rows"]] == [1, 3, 5]  # 3 of 6, spread over the set
        refused = http.post("/evaluations", json={**body, "metrics": ["perplexity"]})
        assert refused.status_code == 400 and "perplexity needs" in refused.json()["error"]["message"]


def test_the_evaluations_page_runs_a_model_on_a_serving_endpoint(world):
    """AppTest: 'Serving endpoint' lists the saved endpoints and the models their server lists; the form (numbers
    bounded by the run's config) queues a run on that model, which completes with rows."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from services.deploy import ServingEndpoint, save_endpoint
    from services.evaluation import get_evaluation, list_evaluations, wait_for_evaluation

    save_endpoint(ServingEndpoint(name="here", url=world["url"], engine="console"))
    before = {r.id for r in list_evaluations()}
    page = Path(__file__).resolve().parents[1] / "views" / "evaluations.py"
    at = AppTest.from_file(str(page), default_timeout=120).run()
    assert not at.exception
    at.segmented_control(key="eval_where").set_value("Serving endpoint").run()
    assert at.selectbox(key="eval_endpoint").options == ["here"]
    assert "mapper@v1" in at.selectbox(key="eval_remote_model").options
    assert not [s for s in at.selectbox if s.key == "eval_target"], "the local target choice is hidden"
    assert at.number_input(key="eval_batch").max == 256 and at.number_input(key="eval_tokens").max == 2048
    assert "perplexity" not in at.multiselect(key="eval_metrics_remote").options
    assert at.multiselect(key="eval_metrics_remote").proto.placeholder == "empty: the defaults for the dataset's kind"
    at.selectbox(key="eval_remote_model").set_value("mapper@v1")
    at.selectbox(key="eval_dataset").set_value(next(o for o in at.selectbox(key="eval_dataset").options if "eval" in o))
    at.number_input(key="eval_limit").set_value(2)
    at.number_input(key="eval_tokens").set_value(24)
    at.button(key="FormSubmitter:eval_form-Run evaluation").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (run_id,) = {r.id for r in list_evaluations()} - before
    assert wait_for_evaluation(run_id, timeout=600).status.value == "completed"
    detail = get_evaluation(run_id)
    assert detail["target"] == "endpoint:here/mapper@v1" and len(detail["rows"]) == 2


def _saved_federation(name: str):
    """A saved one-adapter federation of the mapper (saved once per module: names are unique)."""
    from services.federation import compose_federation, list_federations, save_federation

    saved = next((f for f in list_federations() if f.name == name), None)
    return saved or save_federation(compose_federation(adapters=["mapper"], name=name))


def test_the_federation_ab_runs_a_side_on_an_endpoint_and_it_answers_as_the_local_side(world):
    """The A/B's side B is a model on a serving endpoint (this console's server): the saved federation served there,
    and the adapter served alone, answer every prompt as the federation run here does, with the same system
    message and decoding settings (a repetition penalty included, which changes the answers)."""
    from services.deploy import ServingEndpoint, save_endpoint
    from services.federation import GenerationSettings, compare_federations, endpoint_model

    save_endpoint(ServingEndpoint(name="here", url=world["url"], engine="console"))
    federation = _saved_federation("mapper alone")
    records = [{"prompt": p, "reference": ANSWER} for p in PROMPTS[:3]] + [{"prompt": "Say hello to the team."}]
    plain = GenerationSettings(max_new_tokens=24)
    settings = GenerationSettings(max_new_tokens=24, system="Answer in RMIS terms.", repetition_penalty=1.5)
    local, served = compare_federations(federation, endpoint_model("here", federation.id), records, settings)
    assert (served.federation_id, served.name) == (None, f"{federation.id} on here (endpoint)")
    assert local.federation_id == federation.id
    assert [r.prompt for r in served.rows] == [r["prompt"] for r in records]
    assert [(r.response, r.tokens) for r in served.rows] == [(r.response, r.tokens) for r in local.rows]
    assert served.accuracy == local.accuracy and served.rows[3].correct is None
    assert all(r.latency_ms > 0 and r.adapters_used == [] for r in served.rows)
    unpenalized, adapter = compare_federations(federation, endpoint_model("here", "mapper@v1"), records, plain)
    assert [r.response for r in adapter.rows] == [r.response for r in unpenalized.rows]
    assert unpenalized.accuracy and unpenalized.accuracy > 0, "the adapter answers some prompts exactly"
    assert [r.response for r in unpenalized.rows] != [r.response for r in local.rows], (
        "the system message and penalty change the answers, so the equality above shows they reached the server"
    )


def test_an_ab_side_on_a_bad_or_unreachable_endpoint_is_refused_readably(world, monkeypatch, refused_port):
    from services.errors import ConsoleError
    from services.federation import compare_federations, endpoint_model

    monkeypatch.delenv("UNSET_AB_KEY", raising=False)
    for call, words in [
        (lambda: endpoint_model("nowhere", "mapper"), "No serving endpoint named 'nowhere'"),
        (lambda: endpoint_model(world["url"], " "), "Name the model"),
        (lambda: endpoint_model(world["url"], "mapper", SECRET), "names an environment variable"),
        (lambda: endpoint_model(world["url"], "mapper", "UNSET_AB_KEY"), r"\$UNSET_AB_KEY, which is unset"),
    ]:
        with pytest.raises(ConsoleError, match=words):
            call()
    federation = _saved_federation("mapper alone")
    down = endpoint_model(f"http://127.0.0.1:{refused_port}", "mapper")
    with pytest.raises(ConsoleError, match="Could not reach .* Check that the server is running"):
        compare_federations(federation, down, [{"prompt": PROMPTS[0]}])
    ghost = endpoint_model(world["url"], "ghost")
    with pytest.raises(ConsoleError, match=r"refused the chat completion \(404\)"):
        compare_federations(federation, ghost, [{"prompt": PROMPTS[0]}])


def test_the_federation_pages_ab_compares_a_saved_federation_with_a_model_on_an_endpoint(world):
    """AppTest: on Serving endpoint, B offers the saved endpoints and the models their server lists; the A/B's
    table shows the endpoint's answers beside the federation's."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from services.deploy import ServingEndpoint, save_endpoint
    from services.federation import compose_federation, delete_federation, list_federations, save_federation
    from views.common import plain

    save_endpoint(ServingEndpoint(name="here", url=world["url"], engine="console"))
    federation = _saved_federation("mapper alone")
    assert [f.id for f in list_federations()] == [federation.id]
    page = Path(__file__).resolve().parents[1] / "views" / "federations.py"
    at = AppTest.from_file(str(page), default_timeout=180).run()
    assert not at.exception
    assert at.radio(key="ab_a_kind").value == "Saved federation" and at.selectbox(key="ab_a").value == federation.id
    assert at.radio(key="ab_b_kind").value == "Saved federation", "no server is asked until a side is on one"
    at.radio(key="ab_b_kind").set_value("Serving endpoint").run()
    assert at.selectbox(key="ab_b_endpoint").options == ["here"]
    assert {"mapper@v1", federation.id} <= set(at.selectbox(key="ab_b_remote_model").options)
    at.selectbox(key="ab_b_remote_model").set_value("mapper@v1")
    at.text_area(key="ab_prompts").set_value(f"{PROMPTS[0]}\n{PROMPTS[3]}\n")
    at.number_input(key="ab_gen_max_new_tokens").set_value(16).run()
    at.button(key="ab_run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[-1].value
    assert list(table["Prompt"]) == [PROMPTS[0], PROMPTS[3]]
    assert list(table["B response"]) == list(table["A response"]) and all(table["B ms"] > 0)
    titles = [f"**{plain(f'A: mapper alone · {federation.id}')}**", f"**{plain('B: mapper@v1 on here (endpoint)')}**"]
    assert set(titles) <= {m.value for m in at.markdown}, "each side's card is titled with its label"
    assert any("round trips" in c.value for c in at.caption), "the endpoint's latencies are said to be round trips"
    at.radio(key="ab_b_kind").set_value("Saved federation").run()
    assert at.button(key="ab_run").disabled, "one saved federation on both sides: nothing to compare"
    assert not any("are the same" in w.value for w in at.warning), "no warning with a single federation saved"
    assert any("To compare federations" in c.value for c in at.caption), "the caption says how to get a second one"
    second = save_federation(compose_federation(adapters=["mapper"], weights=[0.5], name="mapper at half"))
    at.run()
    assert at.radio(key="ab_b_kind").value == "Saved federation", "the side the user picked stays picked"
    assert at.selectbox(key="ab_b").value == second.id, "with a second federation saved, B is not A's any more"
    assert not any("are the same" in w.value for w in at.warning)
    delete_federation(second.id)
