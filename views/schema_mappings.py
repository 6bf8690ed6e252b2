"""Schema Mappings: retailer fields -> RMIS, tested, versioned, and turned into training data."""

import pandas as pd
import streamlit as st

from services import ConsoleError, NotFound, mappings
from views.common import done, load_demo_button, page_title, plain, show_error, show_table
from views.session import may

FAIL_CSS = "background-color: #ef4444; color: #ffffff"
PREVIEW_ROWS = 20
STATUS_LABELS = {"active": "Active", "draft": "Draft", "invalid": "Unreadable"}

page_title("Schema Mappings")
st.caption("How each retailer's raw fields become RMIS fields. Field status is computed from the source's sample rows.")


def mappings_table(summaries: list[mappings.MappingSummary]) -> None:
    table = pd.DataFrame(
        [
            {
                "Retailer": summary.retailer,
                "Version": f"v{summary.version}",
                "Fields": summary.fields,
                "Coverage": summary.coverage,
                "Status": STATUS_LABELS.get(summary.status, summary.status),
                "Raw source": summary.source_id,
            }
            for summary in summaries
        ]
    )
    show_table(
        table,
        hide_index=True,
        key="mappings_table",
        column_config={
            "Coverage": st.column_config.ProgressColumn("Coverage", min_value=0.0, max_value=1.0, format="percent")
        },
    )
    for summary in summaries:
        if summary.problem:
            st.warning(f"**{plain(summary.slug)}.yaml cannot be read.** {plain(summary.problem)}")


def harmonized_view(result: mappings.HarmonizeResult) -> None:
    """Harmonized rows with failing cells in red, each showing why it failed."""
    show_table(
        result.display_frame().style.apply(lambda _: result.failed.map(lambda bad: FAIL_CSS if bad else ""), axis=None),
        hide_index=True,
    )


def test_panel(candidate: mappings.Mapping, sample: pd.DataFrame) -> None:
    if sample.empty:
        st.info("There are no sample rows to test against; generate the raw sources first.")
        return
    statuses = mappings.field_status(candidate, sample)
    failing = [status for status in statuses if status.failing_rows]
    if failing:
        names = ", ".join(status.target for status in failing)
        show_error(
            f"{len(failing)} of {len(statuses)} fields of the edited mapping fail on the {len(sample)} sample rows: "
            f"{names}. They are listed first below."
        )
    else:
        st.success(f"All {len(statuses)} fields of the edited mapping succeed on the {len(sample)} sample rows.")
    # The test's own statuses, failing fields first and every row in view (the grid above shows the saved version's).
    ordered = sorted(statuses, key=lambda s: s.failing_rows == 0)
    show_table(
        pd.DataFrame(
            [
                {"Target": s.target, "Source": s.source or "—", "Transform": s.transform, "Status": s.label}
                for s in ordered
            ]
        ),
        hide_index=True,
        height=(len(ordered) + 1) * 35 + 3,
        column_config={"Status": st.column_config.TextColumn("Status (edited mapping)", width="large")},
    )
    preview = sample.head(PREVIEW_ROWS)
    raw_column, harmonized_column = st.columns(2)
    with raw_column:
        st.markdown(f"**Raw rows** · `{candidate.source_id}`")
        show_table(preview, hide_index=True)
    with harmonized_column:
        st.markdown("**Harmonized rows** · RMIS")
        harmonized_view(mappings.harmonize(candidate, preview))


def save(candidate: mappings.Mapping | str, current: mappings.Mapping) -> None:
    """Save, then rerun so the table shows the new version; a refusal is shown and nothing changes."""
    try:
        saved = mappings.save_mapping(candidate, expected_retailer=current.retailer)
    except ConsoleError as error:
        show_error(f"Not saved: {error} Nothing was changed.")
        return
    if saved.version == current.version:
        st.session_state["mapping_flash"] = f"No changes to save: {saved.retailer} stays at v{saved.version}."
    else:
        st.session_state["mapping_flash"] = f"Saved {saved.retailer} mapping as v{saved.version}."
    st.rerun()


def pending_edits(state: dict, version: str) -> None:
    """Say what the grid holds that is not saved yet, so nobody leaves the page thinking it is."""
    counts = {
        "edited": len(state.get("edited_rows", {})),
        "added": len(state.get("added_rows", [])),
        "deleted": len(state.get("deleted_rows", [])),
    }
    if any(counts.values()):
        summary = ", ".join(f"{count} {kind} row{'s' if count > 1 else ''}" for kind, count in counts.items() if count)
        st.caption(f":material/edit: Unsaved changes to v{version}: {summary}. Save to keep them.")


def editor_tab(mapping: mappings.Mapping, sample: pd.DataFrame, statuses: list[mappings.FieldStatus]) -> None:
    revision = f"{mapping.slug}_{mapping.version}"  # a new version starts a fresh editor
    writer = may(mappings.save_mapping, why="Saving a mapping")
    status = st.selectbox(
        "Status",
        ["active", "draft"],
        index=["active", "draft"].index(mapping.status),
        format_func=str.title,
        key=f"mapping_status_{revision}",
        disabled=not writer,
    )
    edited = st.data_editor(
        mappings.editor_rows(mapping, statuses),
        key=f"mapping_editor_{revision}",
        disabled=not writer,
        num_rows="dynamic",
        hide_index=True,
        height=(len(mapping.fields) + 2) * 35 + 3,  # every field visible, plus room for a new row
        column_order=["source", "target", "transform", "status", "params", "notes"],
        column_config={
            "source": st.column_config.TextColumn("Source field", help="Column of the raw source; empty for constant."),
            "target": st.column_config.SelectboxColumn(
                "Target (RMIS)", options=list(mappings.RMIS_FIELDS_BY_NAME), required=True
            ),
            "transform": st.column_config.SelectboxColumn(
                "Transform",
                options=list(mappings.TRANSFORMS),
                required=True,
                help="\n\n".join(f"**{t.name}**: {t.help}" for t in mappings.TRANSFORMS.values()),
            ),
            "params": st.column_config.TextColumn("Params (JSON)", help='e.g. {"divisor": 1000000}', width="medium"),
            "notes": st.column_config.TextColumn("Notes"),
            "status": st.column_config.TextColumn(
                f"Status of saved v{mapping.version}",
                disabled=True,
                width="medium",
                help="How the saved version fares on the sample rows; Test mapping checks your edits.",
            ),
        },
    )
    pending_edits(st.session_state.get(f"mapping_editor_{revision}", {}), mapping.version)
    test_column, save_column = st.columns(2)
    test = test_column.button("Test mapping", key="test_mapping", width="stretch")
    save_clicked = writer and save_column.button(
        "Save mapping (bumps version)",
        key="save_mapping",
        type="primary",
        width="stretch",
        help="Checks every field on the sample rows first; saving v0.2.0 writes v0.2.1 and archives v0.2.0.",
    )
    if not (test or save_clicked):
        return
    try:
        candidate = mappings.mapping_from_editor(mapping, edited.to_dict("records"), status=status)
    except ConsoleError as error:
        show_error(f"Not saved: {error} Nothing was changed." if save_clicked else error)
        return
    if save_clicked:
        save(candidate, mapping)
    else:
        test_panel(candidate, sample)


def yaml_tab(mapping: mappings.Mapping) -> None:
    text = mappings.get_mapping_yaml(mapping.retailer)
    writer = may(mappings.save_mapping, why="Saving a mapping")
    edited = st.text_area(
        "Mapping YAML",
        value=text,
        height=520,
        key=f"mapping_yaml_{mapping.slug}_{mapping.version}",
        disabled=not writer,
    )
    if writer and st.button("Save YAML (bumps version)", key="save_mapping_yaml", type="primary"):
        save(edited, mapping)


def history_tab(mapping: mappings.Mapping) -> None:
    versions = mappings.mapping_history(mapping.retailer)
    if not versions:
        st.caption(f"No earlier versions: v{mapping.version} is the first one saved here.")
        return
    version = st.selectbox("Archived version", versions, format_func=lambda v: f"v{v}", key="mapping_history_version")
    st.code(mappings.get_mapping_yaml(mapping.retailer, version), language="yaml")


def generator_tab(mapping: mappings.Mapping) -> None:
    """A mapping run on a raw source gives an SFT dataset (prompt: a raw value, answer: its RMIS value) and a
    held-out evaluation split, both in the Dataset Library."""
    sources = {source.id: source for source in mappings.list_sources() if source.generated}
    if not sources:
        st.info("No raw source has been generated yet: generate the sample sources in the Data Browser.")
        return
    ids = list(sources)
    left, right = st.columns(2)
    source_id = left.selectbox(
        "Raw source",
        ids,
        index=ids.index(mapping.source_id) if mapping.source_id in ids else 0,
        format_func=lambda i: f"{sources[i].title} · {sources[i].rows:,} rows",
        key=f"generate_source_{mapping.slug}",
        help="The mapping's own source is preselected; another source works where it has the same columns.",
    )
    share = right.slider(
        "Held-out share",
        min_value=0.05,
        max_value=0.5,
        value=mappings.EVAL_SHARE,
        step=0.05,
        format="percent",
        key=f"generate_share_{mapping.slug}",
        help="Examples kept out of training for the evaluation split (enum values are always trained on).",
    )
    if may(mappings.generate_training_data, why="Generating a dataset") and st.button(
        f"Generate SFT dataset from {mapping.retailer} v{mapping.version}",
        key="generate_dataset",
        type="primary",
        icon=":material/dataset:",
    ):
        with st.spinner("Running the mapping on the raw rows…"):
            try:
                pair = mappings.generate_training_data(mapping.retailer, source_id, share)
            except Exception as error:  # noqa: BLE001 — a readable error, never a traceback
                show_error(error, "generate_retry")
                return
        # A dataset whose examples are those of its latest version gets no new version: say so, not "created".
        parts = [(pair.train, "training")] + ([(pair.evaluation, "held-out")] if pair.evaluation else [])
        written = "; ".join(
            f"{record.name} v{record.version}"
            + (
                f" is unchanged ({record.rows:,} {role} examples)"
                if record.unchanged
                else f": {record.rows:,} {role} examples"
            )
            for record, role in parts
        )
        if all(record.unchanged for record, _ in parts):
            done(f"Dataset {written}. The mapping gave the same examples: no new version.")
        else:
            done(f"Dataset {written}. Train on it in Training Jobs.")


def schema_tab() -> None:
    show_table(
        pd.DataFrame(
            [
                {
                    "Field": f.name,
                    "Type": f.type,
                    "Required": f.required,
                    "Allowed values": ", ".join(f.choices),
                    "Description": f.description,
                }
                for f in mappings.RMIS_FIELDS
            ]
        ),
        hide_index=True,
    )


def main() -> None:
    if flash := st.session_state.pop("mapping_flash", None):
        st.success(plain(flash), icon=":material/check_circle:")
    summaries = mappings.list_mappings()
    if not summaries:
        # the way out of an empty registry every page offers: the demo's sources, mappings and datasets
        st.info("No mappings yet: load the demo data (four retailer mappings, their raw sources and datasets).")
        load_demo_button("mappings_load_demo")
        return
    mappings_table(summaries)
    readable = [summary.retailer for summary in summaries if not summary.problem]
    if not readable:
        return
    retailer = st.selectbox("Retailer", readable, key="mapping_retailer")
    mapping = mappings.get_mapping(retailer)
    try:
        sample = mappings.sample_rows(mapping)
    except NotFound as error:
        sample = pd.DataFrame()
        st.warning(plain(f"{error} Field statuses stay untested until then."))
    statuses = mappings.field_status(mapping, sample)
    cov = mappings.coverage(mapping)
    columns = st.columns(4)
    columns[0].metric("Coverage", f"{cov.ratio:.0%}", help="Required RMIS fields filled / required RMIS fields.")
    columns[1].metric("Version", f"v{mapping.version}")
    columns[2].metric("Status", mapping.status.title())
    columns[3].metric("Fields OK", f"{sum(s.status == 'ok' for s in statuses)}/{len(statuses)}")
    if cov.missing:
        st.warning(f"Missing required RMIS fields: {', '.join(cov.missing)}.")
    if mapping.description:
        st.caption(plain(mapping.description))
    # The tabs that only show are drawn while open, so a first visit draws one table less; the two editors are
    # drawn under any tab, so an unsaved edit stays while another tab is open.
    editor, raw_yaml, history, generator, schema = st.tabs(
        ["Field mapping", "YAML", "History", "Training data", "RMIS schema"], key="mapping_tab", on_change="rerun"
    )
    with editor:
        editor_tab(mapping, sample, statuses)
    with raw_yaml:
        yaml_tab(mapping)
    if history.open:
        with history:
            history_tab(mapping)
    if generator.open:
        with generator:
            generator_tab(mapping)
    if schema.open:
        with schema:
            schema_tab()


try:
    main()
except Exception as error:  # noqa: BLE001 — the page shows a readable error and a retry, never a traceback
    show_error(error, "mappings_retry")
