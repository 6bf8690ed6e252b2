"""Serving endpoints in the UI: Settings lists and edits them, Adapters deploys to one, Playground runs on one,
and Evaluations and the Federation A/B pick a model on one.

An endpoint is an OpenAI-compatible server (vLLM, SGLang, another console's `make api`); deploying loads an
adapter version into it with `POST /v1/load_lora_adapter`, and the Playground streams a chat completion from it.
"""

import pandas as pd
import streamlit as st

from services import MAX_NAME_LENGTH
from services.deploy import (
    ServingEndpoint,
    delete_endpoint,
    deploy_adapter,
    list_endpoints,
    remote_models,
    save_endpoint,
    stream_on_endpoint,
)
from views.common import attempt, done, generation_settings, plain, show_error, show_table, stream_answer
from views.session import may

ENGINES = {"vllm": "vLLM", "sglang": "SGLang", "console": "Another RMN console"}


def endpoints_section() -> None:
    """Settings: the endpoints table, add or replace one, check what it serves, remove one."""
    st.subheader("Serving endpoints")
    st.caption(
        "OpenAI-compatible servers that adapters can be deployed to and the Playground can run on: vLLM "
        "(`--enable-lora`, `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`), SGLang (`--enable-lora`) or another console "
        "(`make api`). An API key is never stored: name the environment variable that holds it."
    )
    endpoints = attempt(list_endpoints, "retry_endpoints")
    if endpoints:
        show_table(
            pd.DataFrame(
                {
                    "Name": [e.name for e in endpoints],
                    "URL": [e.base_url for e in endpoints],
                    "Engine": [ENGINES[e.engine] for e in endpoints],
                    "API key from": [f"${e.api_key_env}" if e.api_key_env else "—" for e in endpoints],
                    "Adapters folder there": [e.adapter_root or "same path as here" for e in endpoints],
                }
            ),
            hide_index=True,
        )
        left, check, remove = st.columns([3, 1, 1], vertical_alignment="bottom")
        name = left.selectbox("Endpoint", [e.name for e in endpoints], key="endpoint_pick")
        if check.button("Check", key="endpoint_check", icon=":material/network_check:", help="GET /v1/models"):
            models = attempt(lambda: remote_models(name), "retry_endpoint_check")
            if models is not None:
                st.success(plain(f"{name} answers and serves {len(models)} model(s): {', '.join(models) or 'none'}."))
        if may(delete_endpoint) and remove.button("Remove", key="endpoint_remove", icon=":material/delete:"):
            try:
                delete_endpoint(name)
            except Exception as error:  # noqa: BLE001 — shown as a readable error
                show_error(error, "retry_endpoint_remove")
            else:
                done(f"Removed endpoint {name}.", rerun="app")
    elif endpoints is not None:
        st.caption("No endpoints yet.")
    if not may(save_endpoint, why="Adding or removing an endpoint"):
        return
    with st.form("endpoint_add", clear_on_submit=False):
        st.markdown("**Add an endpoint** (the same name replaces it)")
        left, right = st.columns(2)
        name = left.text_input("Name", max_chars=MAX_NAME_LENGTH, placeholder="gpu-vllm", key="endpoint_name")
        url = right.text_input("URL (without /v1)", placeholder="http://gpu-box:8000", key="endpoint_url")
        engine = left.selectbox("Engine", list(ENGINES), format_func=ENGINES.get, key="endpoint_engine")
        key_env = right.text_input("API key environment variable (optional)", key="endpoint_key_env")
        root = st.text_input(
            "Where that server sees this registry's adapters folder (optional)",
            key="endpoint_root",
            help="Shared storage mounted elsewhere on the server, e.g. /mnt/registry/adapters.",
        )
        if st.form_submit_button("Save endpoint", icon=":material/save:"):
            try:
                endpoint = ServingEndpoint(
                    name=name.strip(),
                    url=url.strip(),
                    engine=engine,
                    api_key_env=key_env.strip() or None,
                    adapter_root=root.strip() or None,
                )
                save_endpoint(endpoint)
            except Exception as error:  # noqa: BLE001 — a bad URL or name is shown, never a traceback
                show_error(error, "retry_endpoint_save")
            else:
                done(f"Saved endpoint {endpoint.name} ({endpoint.base_url}).", rerun="app")


def deploy_panel(adapter: str, version: int) -> None:
    """Adapters: load this version into a running server as a model clients can name."""
    endpoints = attempt(list_endpoints, "retry_deploy_endpoints")
    if endpoints is None:
        return
    if not endpoints:
        st.caption("No serving endpoints yet: add vLLM, SGLang or another console on the **Settings** page.")
        return
    left, middle, right = st.columns([2, 2, 1], vertical_alignment="bottom")
    endpoint = left.selectbox("Endpoint", [e.name for e in endpoints], key="deploy_endpoint")
    lora_name = middle.text_input(
        "Served as", value=f"{adapter}@v{version}", key=f"deploy_name_{adapter}_{version}", max_chars=128
    )
    if may(deploy_adapter, why="Deploying") and right.button(
        "Deploy", type="primary", key="deploy_go", icon=":material/rocket_launch:"
    ):
        deployed = attempt(
            lambda: deploy_adapter(adapter, version, endpoint=endpoint, lora_name=lora_name.strip() or None),
            "retry_deploy",
        )
        if deployed is not None:
            done(
                f"Deployed {deployed.adapter} to {deployed.endpoint} as {deployed.lora_name} "
                f"(the server loaded {deployed.lora_path})."
            )


def pick_endpoint_model(prefix: str) -> tuple[str, str] | None:
    """(endpoint, model): a saved serving endpoint and one of the models its server lists (`GET /v1/models`), or
    None with what to do (no endpoint saved, the server serves nothing, or it cannot be reached). Keys are
    `{prefix}_endpoint` and `{prefix}_remote_model`."""
    endpoints = attempt(list_endpoints, f"retry_{prefix}_endpoints")
    if endpoints is None:
        return None
    if not endpoints:
        st.info("No serving endpoints yet: add one on the **Settings** page.")
        return None
    left, right = st.columns(2)
    endpoint = left.selectbox("Endpoint", [e.name for e in endpoints], key=f"{prefix}_endpoint")
    models = attempt(lambda: remote_models(endpoint), f"retry_{prefix}_remote_models")
    if not models:
        if models is not None:
            st.info(plain(f"{endpoint} serves no models yet: deploy an adapter to it on the Adapters page."))
        return None
    return endpoint, right.selectbox("Model", models, key=f"{prefix}_remote_model")


def remote_playground(prompt_key: str, gen_prefix: str) -> None:
    """Playground: stream an answer from a model of a serving endpoint (not kept in the local history)."""
    picked = pick_endpoint_model("pg")
    if picked is None:
        return
    endpoint, model = picked
    prompt = st.text_area("Prompt", key=prompt_key, height=130)
    with st.expander("Generation settings"):
        settings = generation_settings(gen_prefix)
    if not st.button(
        "Run", type="primary", key="pg_remote_run", icon=":material/play_arrow:", disabled=not prompt.strip()
    ):
        return
    stream = attempt(lambda: stream_on_endpoint(endpoint, model, prompt, settings), "retry_pg_remote_start")
    if stream is None:
        return
    with st.container(border=True, key="pg_remote_output"), st.spinner(f"Generating on {endpoint}…"):
        try:
            stream_answer(stream)
        except Exception as error:  # noqa: BLE001 — readable, never a traceback
            show_error(error, "retry_pg_remote_run")
            return
    answer = stream.answer
    if answer is not None:
        cols = st.columns(4)
        cols[0].metric("Tokens", answer.completion_tokens)
        cols[1].metric("Prompt tokens", answer.prompt_tokens)
        cols[2].metric("Latency (ms)", f"{answer.latency_ms:,.0f}", help="Round trip, as this console saw it.")
        cols[3].metric("First token (ms)", f"{answer.first_token_ms or 0:,.0f}")
        st.caption(plain(f"{model} on {endpoint} · finish: {answer.finish_reason or '—'}"))
