"""Adapters: every trained adapter version with its lineage, download and delete."""

import pandas as pd
import streamlit as st

from services.evaluation import adapter_before_after
from services.health import broken_files
from services.training import AdapterRecord, adapter_archive, delete_adapter, list_adapters
from views.common import (
    attempt,
    done,
    human_size,
    page_title,
    paginate,
    plain,
    show_broken,
    show_error,
    show_table,
    values_table,
)
from views.endpoints import deploy_panel
from views.session import may

page_title("Adapters")
st.caption("LoRA adapters saved by training jobs, in the standard PEFT layout, with the lineage that made them.")


@st.dialog("Delete adapter version")
def confirm_delete(name: str, version: int) -> None:
    st.warning(
        f"This deletes **{name} v{version}**. Federations that use it will no longer load.", icon=":material/delete:"
    )
    if st.button("Delete permanently", type="primary", key="adapter_delete_confirm"):
        try:
            delete_adapter(name, version)
        except Exception as error:  # noqa: BLE001 — shown as a readable error
            show_error(error, "retry_adapter_delete")
            return
        done(f"Deleted {name} v{version}.", rerun="app")


def lineage(adapter: AdapterRecord) -> None:
    """Where the adapter came from: base model, data, results and settings, each a readable table."""
    st.markdown("**Lineage**")
    base, data = st.columns(2)
    with base:
        st.markdown("Base model")
        values_table(adapter.base_model)
    with data:
        st.markdown("Training data")
        values_table(adapter.dataset)
        if adapter.eval_dataset:
            st.markdown("Evaluation data")
            values_table(adapter.eval_dataset)
    results, config = st.columns(2)
    with results:
        st.markdown("Results")
        values_table({**adapter.metrics, **adapter.training}, "Result")
    with config:
        st.markdown("Training settings")
        values_table(adapter.config)


show_broken(attempt(lambda: broken_files("adapters"), "retry_broken") or [])
adapters = attempt(list_adapters, "retry_adapters")
if adapters is not None and not adapters:
    st.info("No adapters yet. Start a job on the **Training Jobs** page; its adapter appears here when it completes.")
elif adapters:
    page = paginate(adapters, key="adapter_page")
    show_table(
        pd.DataFrame(
            {
                "Adapter": [a.label for a in page],
                "Type": [f"{a.adapter_type} · {a.objective.upper()}" for a in page],
                "Base model": [a.base_model.get("id", "") for a in page],
                "Rank": [a.lora_r for a in page],
                "Size": [human_size(a.size_bytes) for a in page],
                "Dataset": [a.dataset.get("name", "") for a in page],
                "Final loss": [a.metrics.get("final_loss", a.metrics.get("train_loss")) for a in page],
                "Eval loss": [a.metrics.get("eval_loss") for a in page],
                "Held-out accuracy": [a.metrics.get("eval_accuracy") for a in page],
                "Created": [a.created for a in page],
            }
        ),
        hide_index=True,
        # numbers, not bars, and short ones: every column fits the page at 1440 px ("Held-out accuracy" was cut off)
        column_config={
            "Created": st.column_config.DatetimeColumn(format="MM-DD HH:mm"),
            "Final loss": st.column_config.NumberColumn(format="%.3f"),
            "Eval loss": st.column_config.NumberColumn(format="%.3f"),
            "Held-out accuracy": st.column_config.NumberColumn(format="percent"),
        },
    )
    labels = {f"{a.name} v{a.version}": a for a in adapters}
    chosen = labels[st.selectbox("Adapter version", list(labels), key="adapter_selected")]
    with st.container(border=True):
        cols = st.columns(3)
        cols[0].metric("Rank / alpha", f"{chosen.lora_r} / {chosen.lora_alpha:g}")
        cols[1].metric("Size", human_size(chosen.size_bytes))
        cols[2].metric("Quantization", chosen.quantization)
        # Ids and paths are long: plain text lines, never a metric that clips them.
        st.caption(f"Job `{chosen.job_id or '—'}` · files `{chosen.path}`")
        st.caption("Load with `PeftModel.from_pretrained(base, path)`.")
        actions = st.columns([1, 1, 4])
        actions[0].download_button(
            "Download (zip)",
            icon=":material/download:",
            data=lambda: adapter_archive(chosen.name, chosen.version),
            file_name=f"{chosen.name}-v{chosen.version}.zip",
            mime="application/zip",
            key="adapter_download",
            on_click="ignore",
        )
        if may(delete_adapter, why="Deleting an adapter") and actions[1].button(
            "Delete", key="adapter_delete", icon=":material/delete:"
        ):
            confirm_delete(chosen.name, chosen.version)
        with st.expander("Deploy to a serving endpoint", icon=":material/rocket_launch:"):
            deploy_panel(chosen.name, chosen.version)
        with st.expander("Use outside the console"):
            for title, command in chosen.usage_commands().items():
                st.caption(plain(title))
                st.code(command, language="bash")
        evaluated = attempt(lambda: adapter_before_after(chosen.name, chosen.version), "retry_adapter_eval")
        if evaluated is not None:
            st.metric(
                f"Exact match on {evaluated.dataset}",
                f"{evaluated.adapter:.1%}",
                delta=evaluated.text,
                delta_color="off",
                help=f"Evaluations {evaluated.base_run} (base) and {evaluated.adapter_run} (this adapter), paired "
                "McNemar test. Open them on the Evaluations page.",
            )
        lineage(chosen)
