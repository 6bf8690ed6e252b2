"""Dataset Library: upload, browse, validate, export and delete datasets."""

import json
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from services import datasets as library
from services.datasets import DatasetKind, QualityReport, suggest_name
from services.health import broken_files
from views.charts import bar_figure
from views.common import (
    BAND_COLORS,
    attempt,
    done,
    human_size,
    load_demo_button,
    page_title,
    paginate,
    plain,
    record_key,
    show_broken,
    show_error,
    show_table,
)
from views.session import may

page_title("Dataset Library")
st.caption("Training and evaluation datasets, stored as canonical JSONL with versions and quality scores.")


def upload_panel(empty: bool) -> bool:
    """The upload expander; True when this run imported a dataset."""
    with st.expander("Upload dataset", expanded=empty, icon=":material/upload_file:"):
        uploaded = st.file_uploader(
            "CSV, JSON or JSONL: alpaca, chat (messages / ShareGPT, tool calls kept), DPO pairs, KTO (answers with a "
            "true / false label) or evaluation (prompt, reference)",
            type=["csv", "json", "jsonl"],
            key="upload_file",
        )
        staged = st.session_state.get("staged_upload")
        if uploaded is None:
            if staged:
                Path(staged["path"]).unlink(missing_ok=True)
                del st.session_state["staged_upload"]
            return False
        if not staged or staged["file_id"] != uploaded.file_id:
            if staged:
                Path(staged["path"]).unlink(missing_ok=True)
            path = attempt(lambda: library.stage_upload(uploaded, uploaded.name), "retry_stage")
            if path is None:
                return False
            staged = st.session_state["staged_upload"] = {"file_id": uploaded.file_id, "path": str(path)}
        encoding = st.selectbox(
            "Text encoding",
            library.ENCODINGS,
            format_func=lambda name: library.ENCODINGS.get(name, name),
            accept_new_options=True,
            key="upload_encoding",
            help="UTF-8 unless the file was saved in another encoding (an Excel CSV on Windows is often cp1252). "
            "Any Python codec name can be typed.",
        )
        encoding = None if encoding == "utf-8" else encoding
        preview = attempt(
            lambda: library.preview_file(Path(staged["path"]), uploaded.name, encoding=encoding), "retry_preview"
        )
        if preview is None:
            return False
        st.info(f"Detected {plain(preview.detection.summary)}.", icon=":material/search:")
        show_table(pd.DataFrame([flatten(r) for r in preview.sample]), hide_index=True)
        kinds = list(DatasetKind)
        # Keyed by the staged file: the next file gets its own name and detected type, never this one's.
        file_id = staged["file_id"]
        with st.form(record_key("import", file_id, "form")):
            name = st.text_input(
                "Dataset name", value=suggest_name(Path(uploaded.name).stem), key=record_key("import", file_id, "name")
            )
            kind = st.selectbox(
                "Dataset type (correct it if the detection is wrong)",
                kinds,
                index=kinds.index(preview.detection.kind),
                format_func=lambda k: k.description,
                key=record_key("import", file_id, "kind"),
            )
            description = st.text_input("Description", key=record_key("import", file_id, "description"))
            submitted = st.form_submit_button("Import dataset", type="primary")
        if submitted:
            with st.spinner("Importing and scoring quality…"):
                record = attempt(
                    lambda: library.import_dataset(
                        name,
                        staged["path"],
                        filename=uploaded.name,
                        description=description,
                        kind=kind,
                        encoding=encoding,
                    ),
                    "retry_import",
                )
            if record is not None:
                st.success(
                    f"**{plain(record.name)}** v{record.version} is unchanged: this file holds the same {record.rows:,} "
                    f"{record.kind.label} examples, so no version was added."
                    if record.unchanged
                    else f"Imported **{plain(record.name)}** v{record.version}: {record.rows:,} {record.kind.label} "
                    f"examples, quality {record.quality_score}.",
                    icon=":material/check_circle:",
                )
                st.session_state["dataset_selected"] = record.name
                return True
    return False


def flatten(row: dict) -> dict:
    """Nested values (messages, DPO prompts) as the JSON the file holds, so tables stay one row per example (Python's
    repr of them read "[{'role': 'user', ...")."""
    return {
        k: (v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v, ensure_ascii=False))
        for k, v in row.items()
    }


def library_table(records: list[library.DatasetRecord]) -> None:
    left, right = st.columns([3, 1])
    search = left.text_input("Search", placeholder="Search by name or description", key="dataset_search")
    kind = right.selectbox(
        "Type",
        [None, *DatasetKind],
        format_func=lambda k: "All types" if k is None else k.description,
        key="dataset_kind",
    )
    needle = search.strip().casefold()
    shown = [
        r
        for r in records
        if (kind is None or r.kind == kind)
        and (not needle or needle in r.name.casefold() or needle in r.description.casefold())
    ]
    if not shown:
        st.info("No dataset matches this search.")
        return
    page = paginate(shown, key="dataset_page")
    frame = pd.DataFrame(
        {
            "Name": [r.name for r in page],
            "Type": [r.kind.label for r in page],
            "Size": [human_size(r.size_bytes) for r in page],
            "Examples": [r.rows for r in page],
            "Quality": [r.quality_score for r in page],
            "Version": [f"v{r.version}" for r in page],
            "Updated": [r.updated for r in page],
            "Source": [r.origin if r.origin != "upload" else r.latest.source for r in page],
        }
    )
    show_table(
        frame,
        hide_index=True,
        # Only a change of the table's selection picks the dataset, so the "Dataset" selectbox below still works.
        on_select=partial(pick_from_table, [r.name for r in page]),
        selection_mode="single-row",
        key="dataset_table",
        # Every column in sight at 1400 px whatever the names: the name and source are bounded (whole in the details
        # below), and the type is said once (its canonical shape is in the details).
        column_config={
            "Name": st.column_config.TextColumn(width=200),
            "Source": st.column_config.TextColumn(width=170, help="Where it came from: the details below say it whole"),
            "Quality": st.column_config.ProgressColumn("Quality", min_value=0, max_value=100, format="%d%%"),
            "Updated": st.column_config.DatetimeColumn("Updated", format="YYYY-MM-DD HH:mm"),
        },
    )


def pick_from_table(names: list[str]) -> None:
    """The table's selection callback: show the dataset whose row was just selected."""
    rows = st.session_state["dataset_table"].selection.rows
    if rows and rows[0] < len(names):
        st.session_state["dataset_selected"] = names[rows[0]]


def quality_report(report: QualityReport) -> None:
    color = BAND_COLORS.get(report.band, "gray")
    cols = st.columns(4)
    cols[0].metric("Quality score", f"{report.quality_score}/100")
    cols[1].markdown(f"**Band**  \n:{color}-badge[{report.band}]  \n{report.band_advice}")
    cols[2].metric("Rows", f"{report.rows:,}")
    cols[3].metric("Issues", f"{report.issue_count:,}")
    st.text(report.summary)  # plain text: it quotes the file's own field names
    checks = pd.DataFrame(
        [
            {
                "Check": c.title,
                "Affected": c.count,
                "Share": c.affected_fraction,
                "Penalty": c.penalty,
                "Lines": ", ".join(map(str, c.lines[:20])) + (" …" if len(c.lines) > 20 else ""),
            }
            for c in report.checks
        ]
    )
    show_table(
        checks,
        hide_index=True,
        column_config={
            "Share": st.column_config.ProgressColumn("Share", min_value=0.0, max_value=1.0, format="percent")
        },
    )
    hit = checks[checks["Affected"] > 0]
    if not hit.empty:
        chart = bar_figure(hit, "Check", "Affected", color="#f59e0b", title="Issues by check")
        chart.update_layout(height=280, margin=dict(l=10, r=10, t=40, b=10))
        st.plotly_chart(chart)
    if report.issues:
        st.markdown("**Issues** (first ones, with line numbers)")
        show_table(pd.DataFrame([i.model_dump() for i in report.issues]), hide_index=True, height=240)


@st.dialog("Delete dataset")
def confirm_delete(name: str) -> None:
    st.warning(f"This deletes **{name}** and all its versions. It cannot be undone.", icon=":material/delete:")
    typed = st.text_input(f"Type {name} to confirm", key="delete_confirm_name")
    if st.button("Delete permanently", type="primary", disabled=typed != name, key="delete_confirm"):
        try:
            library.delete_dataset(name)
        except Exception as error:  # noqa: BLE001 — shown to the user, never as a traceback
            show_error(error, "retry_delete")
            return
        st.session_state.pop("dataset_selected", None)
        done(f"Deleted {name}.", rerun="app")


def dataset_detail(names: list[str]) -> None:
    if st.session_state.get("dataset_selected") not in names:
        st.session_state["dataset_selected"] = names[0]
    name = st.selectbox("Dataset", names, key="dataset_selected")
    record = attempt(lambda: library.get_dataset(name), "retry_detail")
    if record is None:
        return
    with st.container(border=True):
        cols = st.columns(5)
        cols[0].metric("Type", record.kind.label, help=record.kind.description)
        cols[1].metric("Examples", f"{record.rows:,}")
        cols[2].metric("Size", human_size(record.size_bytes))
        cols[3].metric("Quality", "—" if record.quality_score is None else f"{record.quality_score}%")
        cols[4].metric("Version", f"v{record.version}")
        st.caption(
            f"{plain(record.description) or 'No description.'} · shape `{record.kind.value}` · source {plain(record.latest.source)} · "
            f"origin {record.origin} · content sha256 `{record.content_hash[:12]}` · created {record.created:%Y-%m-%d %H:%M} UTC"
        )
        actions = st.columns([1, 1, 1, 3])
        actions[0].download_button(
            "Export JSONL",
            icon=":material/download:",
            data=lambda: library.export_dataset(name, "jsonl"),
            file_name=f"{name}.jsonl",
            mime="application/jsonl",
            key="export_jsonl",
            on_click="ignore",
        )
        actions[1].download_button(
            "Export CSV",
            icon=":material/download:",
            data=lambda: library.export_dataset(name, "csv"),
            file_name=f"{name}.csv",
            mime="text/csv",
            key="export_csv",
            on_click="ignore",
        )
        if writer and actions[2].button("Delete", key="delete_dataset", icon=":material/delete:"):
            confirm_delete(name)
    # Only the open tab is drawn, so a first visit draws one table less; Rows is drawn under any tab, so its page
    # number stays while another tab is open.
    rows_tab, quality_tab, versions_tab = st.tabs(
        ["Rows", "Quality report", "Versions"], key="dataset_tab", on_change="rerun"
    )
    with rows_tab:
        offset = (st.session_state.get("rows_page", 1) - 1) * 20
        rows = attempt(lambda: library.read_rows(name, offset=offset, limit=20), "retry_rows") or []
        show_table(pd.DataFrame([flatten(r) for r in rows]), hide_index=True)
        pages = max(1, -(-record.rows // 20))
        st.number_input(f"Rows page (of {pages})", min_value=1, max_value=pages, step=1, key="rows_page")
    if quality_tab.open:
        with quality_tab:
            if writer and st.button("Validate", key="validate_dataset", type="primary", icon=":material/fact_check:"):
                with st.spinner("Validating…"):
                    report = attempt(lambda: library.validate_dataset_by_name(name), "retry_validate")
                if report is not None:
                    st.session_state["quality_report"] = (name, record.version, report)
            stored = st.session_state.get("quality_report")
            if stored and stored[:2] == (name, record.version):
                quality_report(stored[2])
            else:
                st.caption(
                    "Run **Validate** for the full report: JSON validity, required fields, types, empty values, "
                    "duplicates, length outliers, label balance and PII, with line numbers."
                )
    if versions_tab.open:
        with versions_tab:
            show_table(pd.DataFrame([v.model_dump() for v in reversed(record.versions)]), hide_index=True)


show_broken(attempt(lambda: broken_files("datasets"), "retry_broken") or [])
records = attempt(library.list_datasets, "retry_list")
# Viewers read; the services would refuse their writes anyway.
writer = may(
    library.stage_upload,
    library.import_dataset,
    library.delete_dataset,
    library.validate_dataset,
    why="Uploading, validating and deleting datasets",
)
if records is not None and writer and upload_panel(empty=not records):
    # List again so the new dataset is in the table and selected below on this run, not only after the next click.
    records = attempt(library.list_datasets, "retry_list_imported")
if records is not None:
    if not records:
        st.info("The library is empty. Upload a CSV / JSON / JSONL file above, or load the demo datasets.")
        if writer:
            load_demo_button("library_load_demo")
    else:
        library_table(records)
        st.subheader("Dataset details")
        dataset_detail([r.name for r in records])
