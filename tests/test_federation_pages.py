"""Federation and Playground pages with AppTest on adapters really trained on a tiny model, and the playground
history service (round trip, search, clear, concurrent appends)."""

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.tiny_model import DEFAULT_CORPUS, build_tiny_model, train_tiny_adapter

ROOT = Path(__file__).resolve().parents[1]
MAP_PROMPTS = [
    f"Map field 'adType' with value '{code}' from {retailer} to RMIS."
    for code in ("sp", "sd", "vid")
    for retailer in ("Amazon", "Walmart", "Target", "Instacart")
]
PLAN_PROMPTS = [
    f"Plan a ${budget},000 campaign for {category} on Kroger. Which placements get the budget?"
    for budget in (5, 10, 20, 40)
    for category in ("snacks", "beauty", "pets")
]
CORPUS = DEFAULT_CORPUS + PLAN_PROMPTS + ["Allocate: video 100%."]


def train_tiny_adapters(base_model: str, jobs: Path, steps: int = 40) -> None:
    """Train a retailer adapter ('mapper') and a task adapter ('planner') on `base_model` (a folder name in the active
    RMN_LORA_MODELS) into the active registry, through the real library, training worker and adapter registry:
    what the pages list is what training produced."""
    from registry.datasets import write_records
    from registry.shapes import DatasetKind

    data = {
        ("mapper", "retailer"): [
            {"instruction": p, "input": "", "output": "placement_type: sponsored_product"} for p in MAP_PROMPTS
        ],
        ("planner", "task"): [{"instruction": p, "input": "", "output": "Allocate: video 100%."} for p in PLAN_PROMPTS],
    }
    for (name, kind), rows in data.items():
        write_records(f"{name}_sft", rows * 2, DatasetKind.ALPACA, origin="test")
        rank = 4 if kind == "retailer" else 8
        train_tiny_adapter(name, f"{name}_sft", base_model, jobs / name, steps=steps, rank=rank, adapter_type=kind)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One registry with two trained adapters for the whole module (training is the slow part)."""
    import torch

    root = tmp_path_factory.mktemp("federation-pages")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_HOME", str(root / "registry"))
        patch.setenv("RMN_LORA_MODELS", str(root / "models"))
        build_tiny_model(root / "models" / "tiny-llama", corpus=CORPUS)
        train_tiny_adapters("tiny-llama", root / "jobs")
        yield root
    torch.set_num_threads(threads)


@pytest.fixture
def console(trained, monkeypatch):
    """The trained registry, active, with no saved federations or history left over from another test."""
    from federation.store import delete_federation, list_federations
    from services.playground import clear_history

    monkeypatch.setenv("RMN_LORA_HOME", str(trained / "registry"))
    monkeypatch.setenv("RMN_LORA_MODELS", str(trained / "models"))
    for federation in list_federations():
        delete_federation(federation.id)
    clear_history()
    return trained


def page(name: str) -> AppTest:
    """A page through the app's navigation, as the server runs it."""
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).switch_page(f"views/{name}")


def confirmations(at: AppTest) -> list[str]:
    """The toasts of this run and any still queued for the next (`done(..., rerun="app")` queues them; app.py shows
    them on the rerun)."""
    queued = at.session_state["flash_messages"] if "flash_messages" in at.session_state else []
    return [t.value.replace("\\", "") for t in at.toast] + list(queued)


def texts(at: AppTest) -> str:
    return "\n".join(str(m.value) for m in at.markdown)


def compose(at: AppTest, method: str, name: str = "") -> AppTest:
    at.selectbox(key="fed_retailer").select("mapper@v1")
    at.selectbox(key="fed_task").select("planner@v1")
    at.radio(key="fed_method").set_value(method)
    at.text_input(key="fed_name").set_value(name).run()
    return at.button(key="fed_create").click().run()


def test_item_11_demo_adapters_button_on_an_empty_registry_loads_the_demo_data_and_queues_them(registry):
    """It used to fail with "No dataset named 'retailer_amazon_sft'" (a dead end); now it offers to load the demo."""
    from services.training import job_manager

    at = page("federations.py").run()
    button = at.button(key="fed_demo_adapters")
    assert button.label == "Load the demo data and train the demo adapters"
    button.click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Queued 2 training job\\(s\\)" in t.value for t in at.toast)
    jobs = job_manager().all_jobs()
    assert sorted(j.config.adapter_name for j in jobs) == ["amazon_demo", "planning_demo"]
    for job in jobs:  # no need to train SmolLM2 here
        try:
            job_manager().cancel(job.id)
        except Exception:  # noqa: BLE001 — it may have failed or finished its cancel already
            pass
    for job in jobs:
        assert job_manager().wait(job.id, timeout=600).status == "cancelled"


def test_empty_registry_says_to_train_an_adapter_first(registry):
    at = page("federations.py").run()
    assert not at.exception
    infos = [i.value for i in at.info]
    assert any("Train an adapter on the **Training Jobs** page first" in i for i in infos)
    assert any("No active federation" in i for i in infos)
    assert any("No saved federations yet" in i for i in infos)
    assert sum("No saved federations yet: create one above" in i for i in infos) == 2, "A and B say what to do"
    assert at.button(key="ab_run").disabled
    at.radio(key="ab_b_kind").set_value("Serving endpoint").run()
    assert any("No serving endpoints yet" in i.value for i in at.info), "B offers a serving endpoint, none is saved"
    playground = page("playground.py").run()
    assert not playground.exception
    playground.radio(key="pg_kind").set_value("adapter").run()
    assert any("Train an adapter on the **Training Jobs** page first" in i.value for i in playground.info)
    assert playground.button(key="pg_run").disabled
    playground.radio(key="pg_kind").set_value("federation").run()
    assert any("No saved federations yet" in i.value for i in playground.info)
    assert any("No runs yet" in i.value for i in playground.info)


def test_item_7_a_refused_composition_reads_plainly_and_offers_no_retry(console):
    at = page("federations.py").run()
    assert not at.exception
    at.button(key="fed_create").click().run()
    assert [e.value.replace("\\", "") for e in at.error] == ["Choose at least one adapter to compose."]
    at.selectbox(key="fed_retailer").select("mapper@v1")
    at.radio(key="fed_method").set_value("gated").run()
    at.button(key="fed_create").click().run()
    assert not at.exception
    assert at.error and "needs at least two adapters" in at.error[0].value
    assert not any(b.label == "Retry" for b in at.button), "retrying cannot fix a refused composition (item 7)"
    assert "fed_active" not in at.session_state


def test_walk_the_name_example_is_the_name_an_empty_name_composes_to(console):
    """The name box read "amazon + planning (gated)" beside walk_a, walk_b and Additive, while an empty name composes
    "walk_a + walk_b (additive)" (issue 11 closing walk)."""
    at = page("federations.py").run()
    assert not at.text_input(key="fed_name").placeholder, "nothing chosen, nothing to name"
    at.selectbox(key="fed_retailer").select("mapper@v1")
    at.selectbox(key="fed_task").select("planner@v1").run()
    assert at.text_input(key="fed_name").placeholder == "mapper + planner (additive)"
    at.radio(key="fed_method").set_value("sequential").run()
    example = at.text_input(key="fed_name").placeholder
    assert example == "mapper + planner (sequential)"
    at.button(key="fed_create").click().run()
    assert not at.exception, at.exception
    assert at.session_state["fed_active"].name == example


def test_gated_composition_shows_the_stack_router_and_answers_with_gate_weights(console):
    at = compose(page("federations.py").run(), "gated", "map and plan")
    assert not at.exception, at.exception
    assert any("Composed map and plan" in t.value.replace("\\", "") for t in at.toast)
    stack = texts(at)
    for expected in (
        "Base model: tiny-llama",
        "Retailer: mapper v1",
        "Task: planner v1",
        "rank=4",
        "rank=8",
        "Federated (Ready)",
        "gated · routing top",
        "NOT SAVED",
    ):
        assert expected in stack, expected
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Router accuracy"].endswith("%")
    assert list(at.dataframe[0].value["Adapter"]) == ["mapper v1", "planner v1"]

    at.text_area(key="fed_prompt").set_value(PLAN_PROMPTS[0]).run()
    at.button(key="fed_run").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Tokens"]) > 0
    assert float(metrics["Latency (ms)"].replace(",", "")) > 0
    assert "First load (ms)" in metrics and metrics["Adapters used"] == "1"
    result = at.session_state["fed_result"]
    assert max(result.gate_weights, key=result.gate_weights.get) == "planner v1"
    assert len(at.get("plotly_chart")) == 1
    assert [c.value for c in at.code] == [result.response], "the streamed answer is shown as plain text"
    at.run()
    assert [c.value for c in at.code] == [result.response], "and drawn the same way on the next rerun"


def test_save_refuses_a_duplicate_then_load_and_delete(console):
    from federation.store import list_federations

    at = compose(page("federations.py").run(), "additive", "sum of two")
    at.button(key="fed_save").click().run()
    assert not at.exception
    assert any("Saved sum of two" in message for message in confirmations(at))
    assert at.button(key="fed_save").disabled
    saved = list_federations()
    assert [f.name for f in saved] == ["sum of two"]
    assert list(at.dataframe[-1].value["Name"]) == ["sum of two"]

    at = compose(at, "sequential", "sum of two")
    at.button(key="fed_save").click().run()
    assert at.error and "already exists" in at.error[0].value
    assert len(list_federations()) == 1

    at.button(key="fed_load").click().run()
    assert at.session_state["fed_active"].id == saved[0].id
    assert ":green-badge[SAVED]" in texts(at) and "additive · cat (exact) · rank 12" in texts(at)
    at.button(key="fed_delete").click().run()
    assert any("This deletes the saved federation" in w.value for w in at.warning)
    assert len(list_federations()) == 1, "nothing is deleted before the confirmation (tests/browser confirms it)"


def test_walk_the_playground_prompt_follows_the_adapter_type_until_edited(console):
    """The Playground opened on a planning adapter with the Mapping example, and the adapter answered nonsense (issue
    11 closing walk): a newly chosen adapter brings its type's example; an edited prompt stays."""
    from services.playground import PROMPT_TEMPLATES

    at = page("playground.py").run()
    at.radio(key="pg_kind").set_value("adapter").run()
    assert not at.exception, at.exception
    for adapter, template in (("planner", "Planning"), ("mapper", "Mapping"), ("planner", "Planning")):
        at.selectbox(key="pg_adapter").select(adapter).run()
        assert (at.selectbox(key="pg_template").value, at.text_area(key="pg_prompt").value) == (
            template,
            PROMPT_TEMPLATES[template],
        ), adapter
    at.text_area(key="pg_prompt").input("Plan a $5,000 campaign for pets on Kroger.").run()
    at.selectbox(key="pg_adapter").select("mapper").run()
    assert at.text_area(key="pg_prompt").value == "Plan a $5,000 campaign for pets on Kroger."


def test_playground_runs_an_adapter_and_loads_a_history_entry_back(console):
    from services.playground import list_history

    at = page("playground.py").run()
    at.radio(key="pg_kind").set_value("adapter").run()
    at.selectbox(key="pg_adapter").select("mapper").run()
    at.selectbox(key="pg_template").select("Mapping").run()
    assert at.text_area(key="pg_prompt").value == "Map field 'adType' with value 'sp' from Amazon to RMIS."
    at.number_input(key="pg_gen_max_new_tokens").set_value(12).run()
    at.button(key="pg_run").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Tokens"]) > 0 and metrics["Adapters used"] == "1"
    history = at.dataframe[0].value
    assert list(history["Target"]) == ["mapper v1 (adapter)"]
    assert [c.value for c in at.code] == [list_history()[0].response], "the streamed answer is shown as plain text"

    at.selectbox(key="pg_template").select("Free").run()
    at.number_input(key="pg_gen_max_new_tokens").set_value(40).run()
    assert at.text_area(key="pg_prompt").value == ""
    at.button(key="pg_history_load").click().run()
    assert at.text_area(key="pg_prompt").value == "Map field 'adType' with value 'sp' from Amazon to RMIS."
    assert at.number_input(key="pg_gen_max_new_tokens").value == 12
    assert at.selectbox(key="pg_adapter").value == "mapper"
    toasts = [t.value.replace("\\", "") for t in at.toast]  # the toast's text is Markdown-escaped
    when = f"{list_history()[0].time:%Y-%m-%d %H:%M:%S}"
    assert toasts == [f"Loaded the run of {when} on mapper v1 (adapter) into the form."], "Load said nothing"
    fresh = page("playground.py").run()
    fresh.button(key="pg_history_load").click().run()
    assert [c.value for c in fresh.code] == [list_history()[0].response], "a loaded run shows its answer under Output"
    assert {m.label: m.value for m in fresh.metric}["Tokens"] == metrics["Tokens"]

    at.button(key="pg_history_clear").click().run()
    assert any("deletes every saved run" in w.value for w in at.warning)
    assert len(list_history()) == 1, "nothing is cleared before the confirmation (tests/browser confirms it)"


def entry(number: int, when: datetime, prompt: str = "", kind: str = "base"):
    from federation.engine import GenerationSettings
    from services.playground import HistoryEntry, RunMetrics, Target

    return HistoryEntry(
        id=f"e{number}",
        time=when,
        target=Target(kind=kind, ref="tiny-llama"),
        label=f"tiny-llama ({kind})",
        prompt=prompt or f"prompt {number}",
        settings=GenerationSettings(max_new_tokens=number + 1),
        response=f"answer {number}",
        metrics=RunMetrics(tokens=number, latency_ms=10.0 * number, load_ms=1.0),
    )


def test_an_answer_holding_markdown_and_html_is_shown_as_typed_and_loads_nothing(console):
    """A model's answer is not the console's text: Markdown would fetch an image's address, run a link, bold
    a word that was not bold; the playground and the federation page show it exactly as generated."""
    answer = "![pixel](http://127.0.0.1:9/p.png) **not bold** <img src=http://127.0.0.1:9/q.png>\nline 2"
    at = page("playground.py")
    at.session_state["pg_last"] = entry(1, datetime.now(UTC)).model_copy(update={"response": answer})
    at.run()
    assert not at.exception, at.exception
    assert [c.value for c in at.code] == [answer]
    rendered = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert not any("127.0.0.1:9" in text for text in rendered), rendered


def test_history_round_trip_search_and_clear(registry):
    from services.playground import append_history, clear_history, list_history

    start = datetime(2026, 1, 1, tzinfo=UTC)
    for number in range(5):
        append_history(entry(number, start + timedelta(minutes=number), "Plan snacks" if number == 3 else ""))
    entries = list_history()
    assert [e.id for e in entries] == ["e4", "e3", "e2", "e1", "e0"]
    assert entries[0] == entry(4, start + timedelta(minutes=4))
    assert [e.id for e in list_history("plan SNACKS")] == ["e3"]
    assert [e.id for e in list_history("answer 2")] == ["e2"]
    (registry.playground / "history.jsonl").open("a").write("{not json\n")
    assert len(list_history()) == 5, "an unreadable line is skipped"
    assert clear_history() == 6
    assert list_history() == [] and clear_history() == 0


def test_concurrent_appends_from_threads_lose_and_interleave_nothing(registry):
    from services.playground import append_history, list_history

    now = datetime.now(UTC)
    workers = [
        threading.Thread(target=lambda base=base: [append_history(entry(base + i, now, "x" * 3000)) for i in range(25)])
        for base in range(0, 200, 25)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    lines = (registry.playground / "history.jsonl").read_text().splitlines()
    assert len(lines) == 200
    assert sorted(int(e.id[1:]) for e in list_history()) == list(range(200))


def test_a_run_on_a_missing_target_or_an_empty_prompt_is_refused(registry):
    from services import ConsoleError
    from services.playground import Target, list_history, start_run

    with pytest.raises(ConsoleError, match="prompt is empty"):
        start_run(Target(kind="base", ref="tiny-llama"), "  ")
    with pytest.raises(ConsoleError, match="No adapter named 'ghost'"):
        start_run(Target(kind="adapter", ref="ghost"), "hello")
    with pytest.raises(ConsoleError, match="fed_"):
        start_run(Target(kind="federation", ref="nope"), "hello")
    assert list_history() == []


def test_ab_on_an_evaluation_set_judges_plans_by_their_criteria(console):
    from registry.datasets import delete_dataset, write_records
    from registry.shapes import DatasetKind

    mapped = "placement_type: sponsored_product"
    plan = "Channel: video\nBudget: video 100% ($5,000)\nExpected ROAS uplift: +0.20 (+0.10 to +0.30)"
    # listed by task as the generated held-out splits are: 2 rows are a spread of the set, not its first two (the
    # issue 11 closing walk's 'First N rows' gave one field only)
    rows = [{"prompt": p, "reference": mapped} for p in MAP_PROMPTS[:3]]
    rows += [{"prompt": p, "reference": plan} for p in PLAN_PROMPTS[:3]]
    write_records("mixed_eval", rows, DatasetKind.EVALUATION, origin="test")
    at = compose(page("federations.py").run(), "additive", "A additive")
    at.button(key="fed_save").click().run()
    at = compose(at, "gated", "B gated")
    at.button(key="fed_save").click().run()
    at.radio(key="ab_source").set_value("dataset").run()
    at.selectbox(key="ab_dataset").set_value("mixed_eval")
    at.number_input(key="ab_rows").set_value(2).run()
    at.button(key="ab_run").click().run()
    delete_dataset("mixed_eval")
    assert not at.exception, at.exception
    assert list(at.dataframe[-1].value["Reference"]) == [mapped, plan]
    captions = [c.value for c in at.caption if c.value.startswith("Campaign plans right on")]
    assert captions == ["Campaign plans right on: channel 0%, budget split 0%, uplift 0%"] * 2
    assert "campaign plan" in next(m for m in at.metric if m.label == "Accuracy").help


def test_ab_compares_two_saved_federations_side_by_side(console):
    at = compose(page("federations.py").run(), "additive", "A additive")
    at.button(key="fed_save").click().run()
    at = compose(at, "gated", "B gated")
    at.button(key="fed_save").click().run()
    assert not at.exception
    at.text_area(key="ab_prompts").set_value(f"{MAP_PROMPTS[0]}\n\n{PLAN_PROMPTS[1]}\n")
    at.number_input(key="ab_gen_max_new_tokens").set_value(8).run()
    at.button(key="ab_run").click().run()
    assert not at.exception, at.exception
    table = at.dataframe[-1].value
    assert list(table["Prompt"]) == [MAP_PROMPTS[0], PLAN_PROMPTS[1]]
    assert {"A response", "B response", "A ms", "B ms"} <= set(table.columns)
    assert "A ✓" not in table.columns, "no reference, no correct marks"
    assert sum(m.label == "p95 latency (ms)" for m in at.metric) == 2
    assert [m.value for m in at.metric if m.label == "Accuracy"] == ["—", "—"]


def test_walk_a_disabled_run_ab_says_why_beside_it(console):
    """With one saved federation A and B both showed it and Run A/B was disabled with no word beside it (issue 11
    closing walks): a disabled Run A/B says why, next to it, and what to do."""

    def captions(at: AppTest) -> list[str]:
        return [c.value.replace("\\", "") for c in at.caption]  # as read: the page escapes Markdown in them

    at = compose(page("federations.py").run(), "additive", "only one")
    at.button(key="fed_save").click().run()
    assert at.button(key="ab_run").disabled
    assert any(c.startswith("A and B are the one saved federation: save a second one") for c in captions(at))
    at = compose(at, "gated", "second one")
    at.button(key="fed_save").click().run()
    at.text_area(key="ab_prompts").set_value("  \n").run()
    assert at.button(key="ab_run").disabled
    assert any(c.startswith("No prompt to answer") for c in captions(at))
    at.text_area(key="ab_prompts").set_value(MAP_PROMPTS[0]).run()
    assert not at.button(key="ab_run").disabled
    assert not any(c.startswith(("No prompt", "A and B are")) for c in captions(at))


def test_item_10_ab_tab_keeps_two_different_federations_after_a_delete(console):
    """After deleting the federation A showed, A fell back to the first one in the list, the one B showed, and the
    A/B tab warned "Federation A and B are the same" though nobody chose that."""
    from services.federation import delete_federation, list_federations

    at = page("federations.py").run()
    for method, name in (("additive", "fed one"), ("sequential", "fed two"), ("additive", "fed three")):
        at = compose(at, method, name)
        at.button(key="fed_save").click().run()
    first, second, third = (f.id for f in list_federations())  # the order the selectboxes list them in
    at.selectbox(key="ab_a").set_value(first)
    at.selectbox(key="ab_b").set_value(second).run()
    assert not any("are the same" in w.value for w in [*at.warning, *at.caption])
    delete_federation(first)
    at.run()
    assert not at.exception
    assert (at.selectbox(key="ab_a").value, at.selectbox(key="ab_b").value) == (third, second)
    assert not any("are the same" in w.value for w in [*at.warning, *at.caption])
