"""Federation & Composition: compose adapters over one base model, see the stack, test it live, save
and load it, and compare two saved federations, or a federation and a model on a serving endpoint (vLLM, SGLang,
another console), on the same prompts."""

from html import escape

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from services import datasets as library
from services.demo import missing_demo_datasets, submit_demo_adapters
from services.federation import (
    APPROXIMATIONS,
    EXACT_COMBINATION,
    METHOD_HELP,
    EndpointModel,
    Federation,
    FederationResult,
    FederationScore,
    compare_federations,
    compose_federation,
    default_federation_name,
    delete_federation,
    endpoint_model,
    federation_summary,
    list_federations,
    load_federation,
    member_detail,
    method_options,
    save_federation,
    stream_federation,
)
from services.health import broken_files
from services.playground import PROMPT_TEMPLATES
from services.runtime import inference_engine
from services.training import AdapterRecord, list_adapters, list_base_models
from views.common import (
    attempt,
    done,
    generation_metrics,
    generation_settings,
    human_size,
    page_title,
    paginate,
    parameter_count,
    plain,
    show_answer,
    show_broken,
    show_error,
    show_table,
    stream_answer,
)
from views.endpoints import pick_endpoint_model
from views.session import may

OWN_BASE = ""
NO_ADAPTER = ""
PRIMARY, SUCCESS, WARNING, NEUTRAL = "#3b82f6", "#10b981", "#f59e0b", "#1f2937"
SAMPLES = {name: text for name, text in PROMPT_TEMPLATES.items() if text}
SAVED, ENDPOINT = "Saved federation", "Serving endpoint"
ROUTING = {
    "top": "top: the router's first choice answers",
    "weighted": "weighted: every adapter, scaled by its gate weight",
}
STACK_CSS = f"""<style>
.fed-stack {{display: flex; flex-direction: column; align-items: center; gap: 2px; margin: 4px 0 8px 0;}}
.fed-box {{width: 100%; max-width: 380px; box-sizing: border-box; background: #ffffff; border: 1px solid #e5e7eb;
  border-left: 6px solid var(--accent); border-radius: 8px; padding: 8px 12px; box-shadow: 0 1px 3px #1f293722;}}
.fed-box .fed-title {{color: {NEUTRAL}; font-weight: 600;}}
.fed-box .fed-detail {{color: #4b5563; font-size: 0.85rem;}}
.fed-arrow {{color: {NEUTRAL}; font-size: 1.1rem; line-height: 1.1;}}
</style>"""


def adapter_label(record: AdapterRecord) -> str:
    return f"{record.label} · {record.adapter_type} · r{record.lora_r}"


def ordered(adapters: list[AdapterRecord], role: str) -> list[str]:
    """Adapter refs ('name@vN') with those of `role` first, so the natural choice is at the top of the list."""
    return [f"{a.name}@v{a.version}" for a in sorted(adapters, key=lambda a: a.adapter_type != role)]


def compose_form(adapters: list[AdapterRecord]) -> None:
    """The left panel: choose base, adapters and method; Create composes (and, for gated, trains the router)."""
    records = {f"{a.name}@v{a.version}": a for a in adapters}
    describe = {ref: adapter_label(record) for ref, record in records.items()} | {NO_ADAPTER: "none"}
    bases = attempt(list_base_models, "retry_fed_bases") or []
    base_labels = {OWN_BASE: "the adapters' own base model"} | {m.id: f"{m.id} ({m.source})" for m in bases if m.ready}
    base = st.selectbox(
        "Base model",
        list(base_labels),
        format_func=base_labels.get,
        key="fed_base",
        help="Every adapter must have been trained on this base model (checked by the fingerprint of its weights).",
    )
    retailer = st.selectbox(
        "Retailer adapter",
        [NO_ADAPTER, *ordered(adapters, "retailer")],
        format_func=describe.get,
        key="fed_retailer",
        help="Optional: the adapter that knows a retailer's schema.",
    )
    task = st.selectbox(
        "Task adapter",
        [NO_ADAPTER, *ordered(adapters, "task")],
        format_func=describe.get,
        key="fed_task",
        help="Optional: the adapter for a task such as campaign planning.",
    )
    more = st.multiselect(
        "More adapters",
        [ref for ref in records if ref not in (retailer, task)],
        format_func=describe.get,
        key="fed_more",
        help="Policy, domain or further adapters.",
    )
    chosen = [ref for ref in (retailer, task, *more) if ref]
    method = st.radio(
        "Composition method",
        list(METHOD_HELP),
        format_func=str.capitalize,
        horizontal=True,
        key="fed_method",
        help="\n\n".join(f"**{m.capitalize()}**: {text}" for m, text in METHOD_HELP.items()),
    )
    st.caption(METHOD_HELP[method])
    options: dict[str, object] = {}
    offered = method_options(method)
    if "weights" in offered and chosen:
        columns = st.columns(min(len(chosen), 4))
        weights = [
            columns[i % len(columns)].number_input(
                f"Weight: {records[ref].name}",
                min_value=-4.0,
                max_value=4.0,
                value=1.0,
                step=0.1,
                key=f"fed_weight_{ref}",
                help="This adapter's delta is multiplied by the weight before the deltas are summed.",
            )
            for i, ref in enumerate(chosen)
        ]
        options["weights"] = weights
    if "combination" in offered:
        combination = st.selectbox(
            "Combination",
            [EXACT_COMBINATION, *APPROXIMATIONS],
            key="fed_combination",
            format_func=lambda c: "cat (exact)" if c == EXACT_COMBINATION else f"{c} (approximation)",
            help="cat stacks the low-rank factors, so the composed delta is exactly the weighted sum. "
            "The others are PEFT's merging heuristics.",
        )
        if combination != EXACT_COMBINATION:
            st.warning(
                f"**{combination}** is an approximation, not the weighted sum: {APPROXIMATIONS[combination]}",
                icon=":material/warning:",
            )
        options["combination"] = combination
    if "merged" in offered:
        options["merged"] = st.toggle(
            "Merge into base weights",
            key="fed_merged",
            help="Fold the summed delta into a copy of the base weights: inference then costs what the "
            "base model costs, at the price of one more model in memory.",
        )
    if "routing" in offered:
        options["routing"] = st.radio(
            "Routing",
            list(ROUTING),
            format_func=ROUTING.get,
            key="fed_routing",
            help="The router is trained on each adapter's own training prompts.",
        )
    if "templates" in offered and chosen:
        st.markdown("**Stage prompts**: `{input}` is the request, `{previous}` the previous stage's output.")
        options["templates"] = [
            st.text_input(
                f"Stage {i + 1}: {records[ref].name}",
                value="{input}" if i == 0 else "{previous}",
                key=f"fed_template_{ref}",
            )
            for i, ref in enumerate(chosen)
        ]
    name = st.text_input(
        "Federation name",
        key="fed_name",
        # the name it gets when left empty, for the adapters and method chosen above
        placeholder=default_federation_name([records[ref].name for ref in chosen], method) if chosen else None,
        help="Empty: named after its adapters and method. Saved names must be unique.",
    )
    if st.button("Create Federation", type="primary", key="fed_create", icon=":material/hub:"):
        with st.spinner("Composing" + (" and training the router…" if "routing" in offered else "…")):
            federation = attempt(
                lambda: compose_federation(
                    base_model=base or None,
                    retailer_adapter=retailer or None,
                    task_adapter=task or None,
                    adapters=more,
                    method=method,
                    name=name,
                    **options,
                ),
                "retry_fed_compose",
            )
        if federation is not None:
            st.session_state["fed_active"] = federation
            st.session_state.pop("fed_result", None)
            done(f"Composed {federation.name}: test it below, then save it.")


def stack_box(title: str, detail: str, accent: str) -> str:
    return (
        f'<div class="fed-box" style="--accent: {accent}"><div class="fed-title">{escape(title)}</div>'
        f'<div class="fed-detail">{escape(detail)}</div></div>'
    )


def stack(federation: Federation) -> None:
    """The seed's visual stack: base model → one box per adapter (role, size, rank) → the federated model."""
    base = federation.base
    params = f"{parameter_count(base.parameters)} · " if base.parameters else ""
    boxes = [
        stack_box(f"Base model: {base.id}", f"{base.architecture} · {params}{human_size(base.size_bytes)}", NEUTRAL)
    ]
    for member in federation.members:
        detail = f"~{human_size(member.size_bytes)}, rank={member.rank}" + member_detail(federation, member)
        boxes.append(stack_box(f"{member.role.capitalize()}: {member.label}", detail, PRIMARY))
    boxes.append(stack_box("Federated (Ready)", federation_summary(federation), SUCCESS))
    arrow = '<div class="fed-arrow">↓</div>'
    st.markdown(STACK_CSS + f'<div class="fed-stack">{arrow.join(boxes)}</div>', unsafe_allow_html=True)


def router_panel(federation: Federation) -> None:
    router = federation.router
    if router is None:
        return
    st.metric(
        "Router accuracy",
        f"{router.holdout_accuracy:.0%}",
        help=f"Held out: how often the router picked the right adapter on {router.holdout_examples} "
        "training prompts it did not learn from.",
    )
    # under the figure, the card's full width: beside it, half a card cut the second column off
    show_table(
        pd.DataFrame(
            {"Adapter": list(router.train_examples), "Training prompts": list(router.train_examples.values())}
        ),
        hide_index=True,
        width="stretch",
    )


@st.dialog("Delete federation")
def confirm_delete(federation: Federation) -> None:
    st.warning(
        f"This deletes the saved federation **{plain(federation.name)}** ({federation.id}). Its adapters stay in the "
        "registry.",
        icon=":material/delete:",
    )
    if st.button("Delete permanently", type="primary", key="fed_delete_confirm"):
        try:
            delete_federation(federation.id)
        except Exception as error:  # noqa: BLE001 — shown as a readable error
            show_error(error, "retry_fed_delete")
            return
        done(f"Deleted {federation.name} ({federation.id}).", rerun="app")


def saved_panel(saved: list[Federation]) -> None:
    """The saved federations, paginated, with Load and Delete."""
    st.markdown("**Saved federations**")
    if not saved:
        st.info("No saved federations yet. Create one, test it, and press **Save**.")
        return
    page = paginate(saved, key="fed_saved_page", page_size=10)
    show_table(
        pd.DataFrame(
            {  # no id column: half a page is too narrow for it, and the picker below names each id
                "Name": [f.name for f in page],
                "Method": [f.method for f in page],
                "Adapters": [", ".join(m.label for m in f.members) for f in page],
                "Created": [f.created for f in page],
            }
        ),
        hide_index=True,
        column_config={"Created": st.column_config.DatetimeColumn(format="MM-DD HH:mm")},
    )
    names = {f.id: f"{f.name} · {f.id}" for f in saved}
    picked = st.selectbox("Saved federation", list(names), format_func=names.get, key="fed_saved_pick")
    load, delete = st.columns(2)
    if load.button("Load", key="fed_load", icon=":material/folder_open:"):
        federation = attempt(lambda: load_federation(picked), "retry_fed_load")
        if federation is not None:
            st.session_state["fed_active"] = federation
            st.session_state.pop("fed_result", None)
            st.rerun()
    if may(delete_federation) and delete.button("Delete", key="fed_delete", icon=":material/delete:"):
        confirm_delete(next(f for f in saved if f.id == picked))


def active_panel() -> None:
    """The right panel: the active federation's id and stack, Save, and the saved federations."""
    federation: Federation | None = st.session_state.get("fed_active")
    saved = attempt(list_federations, "retry_fed_saved")
    with st.container(border=True):
        if federation is None:
            st.info("No active federation. Create one on the left, or load a saved one below.")
        else:
            is_saved = saved is not None and any(f.id == federation.id for f in saved)
            badge = ":green-badge[SAVED]" if is_saved else ":orange-badge[NOT SAVED]"
            st.markdown(f"**Federation ID:** `{federation.id}` {badge}  \n{plain(federation.name)}")
            stack(federation)
            router_panel(federation)
            if may(save_federation, why="Saving a federation") and st.button(
                "Save",
                icon=":material/save:",
                key="fed_save",
                disabled=is_saved,
                help="Already saved" if is_saved else "Write this federation to the registry",
            ):
                if attempt(lambda: save_federation(federation), "retry_fed_save") is not None:
                    done(f"Saved {federation.name} as {federation.id}.", rerun="app")
    if saved is not None:
        saved_panel(saved)


def set_prompt(text: str) -> None:
    st.session_state["fed_prompt"] = text


def gate_chart(result: FederationResult) -> None:
    weights = result.gate_weights or {}
    colors = [PRIMARY if label in result.adapters_used else NEUTRAL for label in weights]
    figure = go.Figure(
        go.Bar(
            x=list(weights),
            y=list(weights.values()),
            marker_color=colors,
            text=[f"{w:.0%}" for w in weights.values()],
            textposition="outside",
        )
    )
    figure.update_layout(
        title="Gate weights (blue: adapters that answered)",
        height=280,
        yaxis=dict(range=[0, 1.1]),
        yaxis_title="weight",
        margin=dict(l=10, r=10, t=40, b=10),
    )
    st.plotly_chart(figure, key="fed_gate_chart")


def result_details(result: FederationResult) -> None:
    """Metrics (load time apart from latency), gate weights for gated, every stage for sequential."""
    generation_metrics(result.tokens, result.latency_ms, result.load_ms, result.adapters_used)
    st.caption(
        f"Adapters used: {', '.join(result.adapters_used) or 'none'} · {result.ms_per_token:,.1f} ms/token"
        + (f" · first token after {result.first_token_ms:,.0f} ms" if result.first_token_ms is not None else "")
    )
    if result.gate_weights:
        gate_chart(result)
    for number, stage in enumerate(result.stages or [], 1):
        with st.container(border=True):
            st.markdown(f"**Stage {number}: {stage.adapter}** · {stage.tokens} tokens · {stage.latency_ms:,.0f} ms")
            st.caption("Prompt")
            st.code(stage.prompt, language=None, wrap_lines=True)
            st.caption("Output")
            show_answer(stage.response)


def test_panel() -> None:
    federation: Federation | None = st.session_state.get("fed_active")
    if federation is None:
        st.info("Create or load a federation above to test it here.")
        return
    if "fed_prompt" not in st.session_state:
        set_prompt(SAMPLES["Mapping"])
    samples = st.columns(len(SAMPLES) + 1)
    samples[0].caption("Sample prompts:")
    for column, (name, text) in zip(samples[1:], SAMPLES.items(), strict=True):
        column.button(name, key=f"fed_sample_{name}", on_click=set_prompt, args=(text,), help=text)
    prompt = st.text_area("Prompt", key="fed_prompt", height=100)
    with st.expander("Generation settings"):
        settings = generation_settings("fed_gen_")
    run = st.button(
        "Run Inference", type="primary", key="fed_run", icon=":material/play_arrow:", disabled=not prompt.strip()
    )
    box = st.container(border=True, key="fed_response")
    box.markdown("**Response**")
    if run:
        stream = stream_federation(federation, prompt, settings, inference_engine())
        with box, st.spinner("Generating (the first run also loads the model)…"):
            try:
                stream_answer(stream)
            except Exception as error:  # noqa: BLE001 — readable, never a traceback
                show_error(error, "retry_fed_run")
                return
        st.session_state["fed_result"] = stream.result
    result: FederationResult | None = st.session_state.get("fed_result")
    if result is None or result.federation_id != federation.id:
        box.caption("Press **Run Inference** to see the federation's answer here.")
        return
    if not run:
        with box:
            show_answer(result.response)
    result_details(result)


def score_summary(column, title: str, score: FederationScore) -> None:
    with column.container(border=True):
        st.markdown(f"**{plain(title)}**")  # names are user text, a remote model's id the server's
        a, b = st.columns(2)
        c, d = st.columns(2)
        a.metric(
            "Accuracy",
            "—" if score.accuracy is None else f"{score.accuracy:.0%}",
            help="Judged against the reference: the same text, or for a campaign plan the right channel, a budget "
            "split within 5 points and an uplift inside the priors' interval; — without references.",
        )
        b.metric("Token F1", "—" if score.token_f1 is None else f"{score.token_f1:.2f}")
        c.metric("p50 latency (ms)", f"{score.p50_latency_ms:,.0f}")
        d.metric("p95 latency (ms)", f"{score.p95_latency_ms:,.0f}")
        if score.criteria:
            names = {"channel": "channel", "split": "budget split", "uplift": "uplift"}
            st.caption(
                "Campaign plans right on: " + ", ".join(f"{names[k]} {v:.0%}" for k, v in score.criteria.items())
            )


def mark(correct: bool | None) -> str:
    return "—" if correct is None else "✓" if correct else "✗"


def ab_results(names: tuple[str, str], scores: tuple[FederationScore, FederationScore]) -> None:
    a, b = scores
    left, right = st.columns(2)
    score_summary(left, f"A: {names[0]}", a)
    score_summary(right, f"B: {names[1]}", b)
    figure = go.Figure(
        [
            go.Bar(
                name=f"A: {names[0]}", x=["p50", "p95"], y=[a.p50_latency_ms, a.p95_latency_ms], marker_color=PRIMARY
            ),
            go.Bar(
                name=f"B: {names[1]}", x=["p50", "p95"], y=[b.p50_latency_ms, b.p95_latency_ms], marker_color=WARNING
            ),
        ]
    )
    figure.update_layout(barmode="group", height=260, title="Latency (ms)", margin=dict(l=10, r=10, t=40, b=10))
    st.plotly_chart(figure, key="ab_latency_chart")
    if any(score.federation_id is None for score in scores):
        st.caption(
            "A serving endpoint's latencies are round trips as this console saw them: a server that loads the model "
            "on its first request counts that load in it, while a federation here counts its first load apart."
        )
    rows = list(zip(a.rows, b.rows, strict=True))
    page = paginate(rows, key="ab_page", page_size=10)
    table = {
        "Prompt": [ra.prompt for ra, _ in page],
        "A response": [ra.response for ra, _ in page],
        "B response": [rb.response for _, rb in page],
        "A ms": [ra.latency_ms for ra, _ in page],
        "B ms": [rb.latency_ms for _, rb in page],
    }
    if any(ra.reference is not None for ra, _ in rows):
        table |= {
            "Reference": [ra.reference for ra, _ in page],
            "A ✓": [mark(ra.correct) for ra, _ in page],
            "B ✓": [mark(rb.correct) for _, rb in page],
        }
    show_table(
        pd.DataFrame(table),
        hide_index=True,
        column_config={
            "A ms": st.column_config.NumberColumn(format="%.0f"),
            "B ms": st.column_config.NumberColumn(format="%.0f"),
        },
    )


def keep_distinct_choices(ids: list[str]) -> None:
    """A or B chose a federation that is gone (deleted), or none yet, or the one the other shows (with a single
    saved federation both had to): pick one the other side does not show, so the A/B tab never says "A and B are
    the same" while another federation is there to compare."""
    for key, other in (("ab_a", "ab_b"), ("ab_b", "ab_a")):
        if st.session_state.get(key) not in ids or (
            key == "ab_b" and st.session_state[key] == st.session_state.get(other)
        ):
            fresh = [i for i in ids if i != st.session_state.get(other)] or ids
            if fresh:
                st.session_state[key] = fresh[0]
            else:
                st.session_state.pop(key, None)


Side = str | tuple[str, str]  # a saved federation's id, or (endpoint, model)


def ab_side(side: str, names: dict[str, str]) -> Side | None:
    """One side of the A/B: a saved federation (the default: asking a server for its models at every rerun of this
    busy page would cost a round trip each time), or a model its server lists on a serving endpoint. The kind the
    user picked is kept in a plain session entry (widget state is dropped on other pages)."""
    key = f"ab_{side.lower()}"
    picked = f"{key}_kind_picked"
    st.session_state[f"{key}_kind"] = st.session_state.get(picked, SAVED)
    with st.container(border=True, key=f"{key}_side"):
        kind = st.radio(
            f"{side} runs on",
            [SAVED, ENDPOINT],
            horizontal=True,
            key=f"{key}_kind",
            on_change=lambda: st.session_state.update({picked: st.session_state[f"{key}_kind"]}),
            help="A serving endpoint is an OpenAI-compatible server (vLLM, SGLang, another console) saved on "
            "Settings: it gets the same prompts, system message and decoding settings, over HTTP.",
        )
        if kind == ENDPOINT:
            return pick_endpoint_model(key)
        if not names:
            st.info("No saved federations yet: create one above and **Save** it.")
            return None
        return st.selectbox(f"Federation {side}", list(names), format_func=names.get, key=key)


def ab_target(side: Side) -> Federation | EndpointModel:
    """What `compare_federations` answers with: the saved federation, or the model on its endpoint."""
    return endpoint_model(*side) if isinstance(side, tuple) else load_federation(side)


def ab_panel() -> None:
    """Two sides on the same prompts (typed ones, or rows spread over an evaluation dataset): saved federations,
    or models on serving endpoints, for instance a federation here against the same adapters served by vLLM."""
    saved = attempt(list_federations, "retry_ab_saved")
    if saved is None:
        return
    names = {f.id: f"{f.name} · {f.id}" for f in saved}
    keep_distinct_choices(list(names))
    if len(saved) < 2:
        st.caption(
            "Compare two saved federations, or a federation with a model on a serving endpoint (pick **Serving "
            "endpoint** on a side; add endpoints on **Settings**). To compare federations, create one, **Save** it, "
            "change the adapters or the method, and save again."
        )
    left, right = st.columns(2)
    with left:
        first = ab_side("A", names)
    with right:
        second = ab_side("B", names)
    source = st.radio(
        "Prompts",
        ["typed", "dataset"],
        horizontal=True,
        key="ab_source",
        format_func={"typed": "Type prompts", "dataset": "Evaluation dataset"}.get,
    )
    records: list[dict] = []
    if source == "typed":
        text = st.text_area("Prompts, one per line", value="\n".join(SAMPLES.values()), key="ab_prompts", height=100)
        records = [{"prompt": line.strip()} for line in text.splitlines() if line.strip()]
    else:
        evaluations = attempt(lambda: library.list_datasets(kind="evaluation"), "retry_ab_datasets")
        if evaluations is not None and not evaluations:
            st.info(
                "No evaluation dataset (prompt, reference) in the library yet: upload one on the **Dataset "
                "Library** page, or type prompts instead."
            )
        elif evaluations:
            pick, count = st.columns([3, 1])
            dataset = pick.selectbox("Evaluation dataset", [d.name for d in evaluations], key="ab_dataset")
            limit = count.number_input(
                "Rows",
                min_value=1,
                max_value=500,
                value=10,
                step=5,
                key="ab_rows",
                help="Rows spread evenly over the dataset, the first included: the ones a limited evaluation scores.",
            )
            records = attempt(lambda: library.sample_rows(dataset, int(limit)), "retry_ab_rows") or []
    with st.expander("Generation settings"):
        settings = generation_settings("ab_gen_")
    same = first is not None and first == second
    # A disabled Run A/B says why beside it: with one saved federation both sides showed it and nothing said so there.
    why_not = (
        "Choose what A and B run on."
        if first is None or second is None
        else "A and B are the same: pick two different sides."
        if same and len(saved) > 1
        else "A and B are the one saved federation: save a second one, or pick Serving endpoint on a side."
        if same
        else "No prompt to answer: type one per line, or pick a dataset with rows."
        if not records
        else None
    )
    run_row = st.container(horizontal=True, vertical_alignment="center", gap="medium")
    if run_row.button(
        "Run A/B",
        type="primary",
        key="ab_run",
        icon=":material/compare_arrows:",
        disabled=why_not is not None,
    ):
        assert first is not None and second is not None, "the button is disabled until both sides are chosen"
        with st.spinner(f"Answering {len(records)} prompts with A and B…"):
            scores = attempt(
                lambda: compare_federations(
                    ab_target(first), ab_target(second), records, settings, engine=inference_engine()
                ),
                "retry_ab_run",
            )
        if scores is not None:
            labels = tuple(names.get(score.federation_id or "", score.name) for score in scores)
            st.session_state["ab_result"] = (labels, scores)
    if why_not is not None:
        run_row.caption(plain(why_not))
    if (stored := st.session_state.get("ab_result")) is not None:
        ab_results(*stored)


def demo_adapters_button() -> None:
    """One click from an empty registry to the demo: load the demo data if needed, then queue the Amazon retailer
    and planning adapters."""
    missing = attempt(missing_demo_datasets, "retry_fed_demo_data")
    if missing is None:
        return
    st.caption(
        (
            "The demo data is not loaded yet: this first adds the demo's raw sources, mappings and datasets. "
            if missing
            else ""
        )
        + ("Then it queues" if missing else "This queues")
        + " the two demo adapters (Amazon retailer mapping and campaign planning, on the embedded model); they train "
        "on the Training Jobs page in about 16 minutes on a 2-core CPU."
    )
    label = "Load the demo data and train the demo adapters" if missing else "Train the demo adapters"
    if may(submit_demo_adapters) and st.button(label, key="fed_demo_adapters", icon=":material/model_training:"):
        with st.spinner("Preparing the demo…"):
            job_ids = attempt(lambda: submit_demo_adapters(load_demo_data=True), "retry_fed_demo")
        if job_ids is not None:
            done(f"Queued {len(job_ids)} training job(s). Follow them on the Training Jobs page.")
            st.page_link("views/training_jobs.py", label="Open Training Jobs", icon=":material/model_training:")


page_title("LoRA Federation & Composition")
st.caption(
    "Compose trained adapters over one base model (additive, gated or sequential), test the result live, "
    "save it, and compare two federations, or a federation and a model on a serving endpoint, on the same prompts."
)
show_broken(attempt(lambda: broken_files("adapters", "federations"), "retry_broken") or [])
adapters = attempt(list_adapters, "retry_fed_adapters")
compose_col, active_col = st.columns(2, gap="large")
with compose_col:
    st.subheader("Compose Federation")
    with st.container(border=True):
        if not may(compose_federation):
            st.info(
                "Your role can test saved federations but not compose them; ask an admin for the practitioner role."
            )
        elif adapters is not None and not adapters:
            st.info(
                "No adapters to compose yet. Train an adapter on the **Training Jobs** page first; it appears "
                "here when its job completes."
            )
            demo_adapters_button()
        elif adapters:
            compose_form(adapters)
with active_col:
    st.subheader("Active Federation")
    active_panel()
test_tab, ab_tab = st.tabs([":material/play_arrow: Test Federation", ":material/compare_arrows: A/B"])
with test_tab:
    test_panel()
with ab_tab:
    ab_panel()
