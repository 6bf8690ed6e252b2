"""Publish: an adapter or an additive federation becomes a verified, deployment-ready package."""

import streamlit as st

from services import models as catalog
from services.federation import list_federations
from services.training import FINISHED, adapter_versions, cancel_job, job_manager, list_adapters
from views.common import attempt, human_size, page_title, plain, show_error, show_table
from views.session import fragment, may

page_title("Publish")
st.caption(
    "Merge an adapter (or an additive federation) into its base model's weights, or package it unmerged for a "
    "multi-LoRA server. Every package is loaded back by plain transformers in a fresh process and checked against "
    "the adapter before it is offered."
)

adapters = attempt(list_adapters, "retry_publish_adapters")
federations = attempt(list_federations, "retry_publish_federations")
if not may(catalog.submit_publish, why="Publishing a package"):
    st.page_link("views/models.py", label="Published packages are on Models", icon=":material/deployed_code:")
elif adapters is not None and not adapters:
    st.info("No adapters yet. Train one on **Training Jobs** or with **Train Model**; then publish it here.")
    st.page_link("views/train_wizard.py", label="Train a model", icon=":material/model_training:")
elif adapters:
    additive = [f for f in federations or [] if f.method == "additive" and f.exact]
    source_kind = st.segmented_control(
        "Publish",
        ["Adapter", "Additive federation"],
        default="Adapter",
        key="publish_kind",
        disabled=not additive,
        help=None if additive else "No saved additive federation (exact sum) yet.",
    )
    if source_kind == "Additive federation" and additive:
        labels = {f"{f.name} ({', '.join(m.label for m in f.members)})": f for f in additive}
        federation = labels[st.selectbox("Federation", list(labels), key="publish_federation")]
        source, default_name = federation.id, federation.name
    else:
        names = [a.name for a in adapters]
        left, right = st.columns([3, 1])
        name = left.selectbox("Adapter", names, key="publish_adapter")
        versions = attempt(lambda: adapter_versions(name), "retry_publish_versions") or []
        version = right.selectbox("Version", [v.version for v in reversed(versions)], key="publish_version")
        source, default_name = f"{name}@v{version}", f"{name}-v{version}"
    merge = st.toggle(
        "Merge into the base weights",
        value=True,
        key="publish_merge",
        help="Merged: one plain transformers checkpoint that any server runs at the base model's cost. "
        "Unmerged: the adapter in PEFT layout plus a vLLM command line (--enable-lora) that serves it over the base.",
    )
    with st.form("publish_form", enter_to_submit=False):  # a publish is minutes of work: only its button starts one
        left, right = st.columns(2)
        package_name = left.text_input(
            "Package name",
            value=f"{default_name.replace(' ', '-')}-{'merged' if merge else 'lora'}"[:64],
            max_chars=64,
            help="Letters, digits, '_', '-' or '.'.",
        )
        licence = right.text_input("Licence", value="apache-2.0", max_chars=64, help="Written to the model card.")
        intended_use = st.text_area(
            "Intended use", max_chars=2000, height=80, placeholder="e.g. Mapping Amazon Ads fields to RMIS."
        )
        description = st.text_input("Description (shown on Models)", max_chars=2000)
        shard = st.selectbox(
            "Shard weights above",
            catalog.SHARD_SIZES,
            index=catalog.SHARD_SIZES.index(catalog.DEFAULT_SHARD_SIZE),
            help="Weight files larger than this are split into shards with an index, as the Hub does.",
        )
        submitted = st.form_submit_button("Publish", type="primary", icon=":material/rocket_launch:")
    if submitted:
        try:
            st.session_state["publish_job"] = catalog.submit_publish(
                source,
                merge=merge,
                name=package_name.strip() or None,
                licence=licence,
                intended_use=intended_use,
                description=description,
                max_shard_size=shard,
            )
        except Exception as error:  # noqa: BLE001 — the reason is shown, nothing was queued
            show_error(error)


def result_card(record: catalog.PackageRecord) -> None:
    verification = record.verification
    with st.container(border=True):
        st.success(plain(f"{record.name} is ready ({record.kind})."), icon=":material/check_circle:")
        cols = st.columns(4)
        cols[0].metric("Package size", human_size(record.size_bytes))
        cols[1].metric(
            "Max logit difference", f"{verification.max_abs_diff:.2g}", help=f"Tolerance {verification.tolerance:g}"
        )
        cols[2].metric("Top-1 agreement", f"{verification.top1_agreement:.1%}")
        cols[3].metric("Time to publish", f"{record.publish_seconds:.0f} s")
        st.caption(
            f"Verified with {verification.loader} in a fresh process over {verification.positions} positions of "
            f"{verification.prompts} prompts; {record.files} files, {record.shards} weight file(s); manifest with "
            "SHA-256 of every file."
        )
        if record.serve_command:
            st.code(record.serve_command, language="bash")
        actions = st.columns([1, 1, 3])
        actions[0].download_button(
            f"Download archive ({human_size(record.archive_bytes)})",
            data=lambda: record.archive.read_bytes(),
            file_name=record.archive.name,
            mime="application/zip",
            key="publish_download",
            on_click="ignore",
            icon=":material/download:",
        )
        actions[1].page_link("views/models.py", label="See it on Models", icon=":material/deployed_code:")
        with st.expander("Model card (README.md)", icon=":material/description:"):
            st.code((record.path / "README.md").read_text(encoding="utf-8"), language="markdown")


@fragment(run_every=2)  # its Cancel writes: every rerun acts as the signed-in user
def follow(job_id: str) -> None:
    """The running publish job, re-read every 2 s; when it ends, the whole page shows its result."""
    job = attempt(lambda: catalog.publish_job(job_id), "retry_publish_job")
    if job is None:
        return
    if job.status in FINISHED:
        st.rerun()
    progress = attempt(lambda: job_manager().progress(job_id), "retry_publish_progress")
    with st.container(border=True):
        head, action = st.columns([5, 1], vertical_alignment="center")
        head.markdown(f"**Publishing {plain(job.label)}** · `{job.id}` · {job.status.value}")
        if may(job_manager().cancel) and action.button("Cancel", key="publish_cancel", icon=":material/cancel:"):
            try:
                cancel_job(job_id)
            except Exception as error:  # noqa: BLE001 — the reason is shown
                show_error(error)
            else:
                st.toast("Cancel requested: the publish stops at its next stage.", icon=":material/cancel:")
        if job.status.value == "queued":
            st.progress(0.0, text="Queued: waiting for a free job slot (training and publish jobs share the limit).")
        elif progress is not None:
            text = f"Step {progress.step} of {progress.max_steps or '?'}: {progress.stage or 'starting'}"
            st.progress(progress.fraction, text=text)
        st.caption("The log is on Activity → Job logs; leaving this page does not stop the job.")


# This session's last publish, or (after a reload, from another tab) the newest one still running.
running = [j.id for j in attempt(catalog.publish_jobs, "retry_publish_jobs") or [] if j.status not in FINISHED]
if job_id := st.session_state.get("publish_job") or next(iter(running), None):
    st.session_state["publish_job"] = job_id  # followed to its end: its result or reason stays on the page
    job = attempt(lambda: catalog.publish_job(job_id), "retry_publish_state")
    if job is not None and job.status not in FINISHED:
        follow(job_id)
    elif job is not None and job.result.get("package"):
        record = attempt(lambda: catalog.get_package(job.result["package"]), "retry_publish_last")
        if record is not None:
            result_card(record)
    elif job is not None:
        icon = ":material/cancel:" if job.status.value == "cancelled" else ":material/error:"
        st.error(plain(f"Not published ({job.status.value}): {job.error or 'nothing was kept.'}"), icon=icon)

packages = attempt(catalog.list_packages, "retry_packages")
if packages:
    st.subheader("Published packages")
    show_table(
        [
            {
                "Package": p.name,
                "Kind": p.kind,
                "From": p.source.get("label", ""),
                "Size": human_size(p.size_bytes),
                "Verified": "yes" if p.verification.passed else "no",
                "Max logit diff": f"{p.verification.max_abs_diff:.2g}",
                "Published": p.created.strftime("%Y-%m-%d %H:%M"),
            }
            for p in packages
        ],
        hide_index=True,
    )
