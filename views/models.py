"""Models (seeds 003 / 004): base models, adapter versions and published packages in one searchable list;
register a local folder, edit description and tags, delete with confirmation, download a package."""

import pandas as pd
import streamlit as st

from services import MAX_NAME_LENGTH
from services import models as catalog
from views.common import attempt, human_size, page_title, paginate, parameter_count, plain, show_error, show_table
from views.session import may

KIND_LABELS = {"All": None, "Base models": "base", "Adapters": "adapter", "Packages": "package"}

page_title("Models")
st.caption("Base models, the adapters trained on them (every version) and the packages published from them.")


@st.dialog("Delete model")
def confirm_delete(entry: catalog.ModelEntry) -> None:
    what = {"base": "the registration of", "adapter": "adapter version", "package": "package"}[entry.kind]
    st.warning(plain(f"This deletes {what} {entry.label}. It cannot be undone."), icon=":material/delete:")
    if entry.kind == "base":
        st.caption("The folder on disk is left where it is; only the registration is removed.")
    if st.button("Delete permanently", type="primary", key="model_delete_confirm", icon=":material/delete_forever:"):
        try:
            catalog.delete_model(entry.name, entry.kind, entry.version if entry.kind == "adapter" else None)
        except Exception as error:  # noqa: BLE001 — shown as a readable error
            show_error(error, "retry_model_delete")
            return
        st.session_state["models_flash"] = f"Deleted {entry.label}."
        st.rerun()


def register_form() -> None:
    with st.expander("Register a local base model folder", icon=":material/add_circle:"):
        with st.form("register_model", clear_on_submit=False, border=False):
            left, right = st.columns([1, 2])
            name = left.text_input(
                "Name", max_chars=MAX_NAME_LENGTH, key="register_name", help="Letters, digits, '_', '-' or '.'."
            )
            path = right.text_input(
                "Folder on this machine",
                key="register_path",
                max_chars=1000,
                help="A Hugging Face model folder: config.json, *.safetensors weights and a tokenizer. Pickled weights "
                "(.bin, .pt) and models that need their own code (auto_map) are refused.",
            )
            if st.form_submit_button("Register", icon=":material/add:"):
                try:
                    entry = catalog.register_base_model(name.strip(), path.strip())
                except Exception as error:  # noqa: BLE001 — the reason is shown, nothing was registered
                    show_error(error)
                else:
                    st.session_state["models_flash"] = (
                        f"Registered {entry.name}: {entry.architecture}, {parameter_count(entry.parameters)} parameters."
                    )
                    st.rerun()


if may(catalog.register_base_model, why="Registering, editing and deleting models"):
    register_form()


def edit_and_delete(entry: catalog.ModelEntry) -> None:
    """Description, tags and Delete: shown only to a role the models service lets write."""
    with st.form(f"edit_{entry.kind}_{entry.name}", border=False):
        description = st.text_area(
            "Description", value=entry.description, max_chars=2000, height=80, key=f"desc_{entry.kind}_{entry.name}"
        )
        tag_text = st.text_input(
            "Tags (comma-separated)",
            value=", ".join(entry.tags),
            max_chars=500,
            key=f"tags_{entry.kind}_{entry.name}",
        )
        if st.form_submit_button("Save description and tags", icon=":material/save:"):
            try:
                catalog.update_model(
                    entry.name, entry.kind, description=description, tags=[t for t in tag_text.split(",")]
                )
            except Exception as error:  # noqa: BLE001
                show_error(error)
            else:
                st.session_state["models_flash"] = f"Saved the description and tags of {entry.name}."
                st.rerun()
    deletable = entry.kind != "base" or entry.source == "registered"
    if st.button(
        "Delete",
        key="model_delete",
        icon=":material/delete:",
        disabled=not deletable,
        help=None if deletable else "Only registered folders can be removed; this one is built in or cached.",
    ):
        confirm_delete(entry)


if flash := st.session_state.pop("models_flash", None):
    st.success(plain(flash), icon=":material/check_circle:")

filters = st.columns([3, 3, 2], vertical_alignment="bottom")
kind_label = filters[0].segmented_control("Type", list(KIND_LABELS), default="All", key="models_kind")
search = filters[1].text_input("Search", placeholder="name, architecture, base model, description, tag", key="models_q")
with st.spinner("Reading the registry…"):
    entries = attempt(lambda: catalog.list_models(KIND_LABELS.get(kind_label or "All"), search), "retry_models")
tags = sorted({t for e in entries or [] for t in e.tags})
chosen_tags = filters[2].multiselect("Tags", tags, key="models_tags", disabled=not tags)
if entries is not None and chosen_tags:
    entries = [e for e in entries if set(chosen_tags) <= set(e.tags)]

if entries is not None and not entries:
    if search or chosen_tags or kind_label not in (None, "All"):
        st.info("No model matches these filters.", icon=":material/filter_alt_off:")
    else:
        st.info("No models yet. Register a local folder above, or train an adapter.", icon=":material/info:")
elif entries:
    page = paginate(entries, key="models_page")
    show_table(
        pd.DataFrame(
            {
                "Type": [e.kind for e in page],
                "Name": [e.name for e in page],
                "Version": [f"v{e.version}" if e.version is not None else "" for e in page],
                "Latest": [e.latest for e in page],
                "Parameters": [parameter_count(e.parameters) if e.parameters else "" for e in page],
                "Base model": [e.base_model for e in page],
                "Size": [human_size(e.size_bytes) for e in page],
                "Created": [e.created for e in page],
                "Tags": [", ".join(e.tags) for e in page],
                "Status": ["problem" if e.error else "ready" for e in page],
            }
        ),
        hide_index=True,
        # Every column in sight at 1400 px whatever the names: names and tags are bounded (whole in the details below,
        # with the architecture, which search still matches).
        column_config={
            "Name": st.column_config.TextColumn(width=170),
            "Base model": st.column_config.TextColumn(width=160),
            "Tags": st.column_config.TextColumn(width=100),
            "Created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )
    labels = {f"{e.kind}: {e.label}": e for e in page}
    entry = labels[st.selectbox("Details of", list(labels), key="models_selected")]
    with st.container(border=True):
        st.subheader(entry.label)
        if entry.error:
            st.warning(plain(entry.error), icon=":material/warning:")
        cols = st.columns(4)
        cols[0].metric("Type", entry.kind)
        cols[1].metric("Size", human_size(entry.size_bytes))
        if entry.kind == "adapter":
            cols[2].metric("Rank / alpha", f"{entry.details['rank']} / {entry.details['alpha']:g}")
            cols[3].metric("Held-out accuracy", f"{entry.details['metrics'].get('eval_accuracy', float('nan')):.1%}")
        elif entry.kind == "package":
            verification = entry.details["verification"]
            cols[2].metric("Max logit difference", f"{verification['max_abs_diff']:.2g}")
            cols[3].metric("Verified", "yes" if verification["passed"] else "no")
        else:
            cols[2].metric("Parameters", parameter_count(entry.parameters))
            cols[3].metric("Dtype", entry.dtype)
        editable = may(catalog.update_model, catalog.delete_model)
        if not editable:  # an editor sees it in the Description box below
            st.text(f"Description: {entry.description or '—'}")
        st.caption(plain(f"Architecture: {entry.architecture or '—'} · Source: {entry.source} · Path: {entry.path}"))
        if entry.kind == "package":
            archive = attempt(lambda: catalog.get_package(entry.name).archive, "retry_package_archive")
            actions = st.columns([1, 1, 3])
            if archive is not None and archive.is_file():
                actions[0].download_button(
                    f"Download ({human_size(archive.stat().st_size)})",
                    data=lambda: archive.read_bytes(),
                    file_name=archive.name,
                    mime="application/zip",
                    key="package_download",
                    on_click="ignore",
                    icon=":material/download:",
                )
            if actions[1].button("Check files", key="package_check", icon=":material/verified:"):
                with st.spinner("Hashing every file…"):
                    try:
                        manifest = catalog.check_package(entry.name)
                    except Exception as error:  # noqa: BLE001 — a damaged package is reported, not raised
                        show_error(error)
                    else:
                        st.success(
                            f"All {len(manifest['files'])} files match the manifest's SHA-256.",
                            icon=":material/verified:",
                        )
            if entry.details.get("serve_command"):
                st.code(entry.details["serve_command"], language="bash")
        if editable:
            edit_and_delete(entry)
        if entry.kind != "package":
            runs = attempt(lambda: catalog.model_evaluations(entry), "retry_model_evaluations")
            if runs:
                st.markdown("**Evaluations**")
                if runs[0].get("before_after"):
                    st.caption(f"Against its base model: {runs[0]['before_after']}")
                show_table(
                    [{k: v for k, v in run.items() if k != "before_after"} for run in runs],
                    hide_index=True,
                    column_config={"created": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm")},
                )
                for run in runs[:10]:
                    st.page_link(
                        "views/evaluations.py",
                        label=f"Open {run['run']} ({run['dataset']}) on Evaluations",
                        icon=":material/fact_check:",
                        query_params={"run": run["run"]},
                    )
            elif runs is not None:
                st.caption("No evaluation of this model yet.")
        with st.expander("All metadata", icon=":material/data_object:"):
            st.json(entry.details, expanded=False)
