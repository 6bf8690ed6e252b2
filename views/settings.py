"""Settings: what the console runs with and where each value comes from; the editable ones saved to
the registry's settings file and applied at once where the running console can take them."""

import json

import pandas as pd
import streamlit as st

from services import settings as config
from views.common import attempt, done, model_widget, page_title, plain, show_error, show_table
from views.endpoints import endpoints_section
from views.session import may

page_title("Settings")
st.caption(
    "Values come from the defaults, the settings file in the registry, or environment variables (which win). "
    "Values set by the environment are shown but cannot be edited here."
)


def setting(name: str, label: str, container, note: str = "", **options):
    """One editable setting's widget: bounds, choices and help from the Settings model (the one owner of each rule),
    its current value, disabled when the environment sets it."""
    row = current[name]
    return model_widget(
        config.Settings,
        name,
        label,
        key=f"settings_{name}",
        value=row.value,
        container=container,
        disabled=not row.editable,
        help=f"{row.description} {note}".strip(),
        **options,
    )


@st.dialog("Restore defaults")
def confirm_restore() -> None:
    st.warning(
        "This removes the settings file: every editable value goes back to its default.", icon=":material/restart_alt:"
    )
    if st.button("Restore defaults", type="primary", key="settings_restore_confirm", icon=":material/restart_alt:"):
        try:
            config.restore_defaults()
        except Exception as error:  # noqa: BLE001
            show_error(error, "retry_settings_restore")
            return
        done("Defaults restored.", rerun="app")


if problem := attempt(config.settings_file_problem, "retry_settings_problem"):
    st.warning(plain(problem), icon=":material/warning:")

rows = attempt(config.settings_table, "retry_settings")
if rows:
    current = {row.name: row for row in rows}
    if may(config.update_settings, config.restore_defaults, why="Changing settings"):
        with st.form("settings_form"):
            st.subheader("Editable")
            left, right = st.columns(2)
            values = {
                "max_concurrent_jobs": setting(
                    "max_concurrent_jobs", "Max concurrent jobs", left, "Applied at once.", step=1
                ),
                "max_loaded_models": setting(
                    "max_loaded_models",
                    "Max loaded models",
                    right,
                    "Applied at once (least recently used models are unloaded).",
                    step=1,
                ),
                "cpu_hour_price": setting("cpu_hour_price", "Price per CPU-hour (USD)", left, step=0.01, format="%.2f"),
                "gpu_hour_price": setting(
                    "gpu_hour_price", "Price per GPU-hour (USD)", right, step=0.01, format="%.2f"
                ),
                "page_size": setting("page_size", "Rows per page", left, step=5),
                "theme": setting("theme", "Theme", right, "Applied on the next page load."),
            }
            defaults_text = st.text_area(
                "Training defaults (JSON)",
                value=json.dumps(current["training_defaults"].value, indent=1),
                height=100,
                max_chars=4000,
                help=current["training_defaults"].description
                + ' e.g. {"epochs": 2, "lora_r": 32}. Checked by the same rules as a job.',
                disabled=not current["training_defaults"].editable,
                key="settings_training_defaults",
            )
            submitted = st.form_submit_button("Save", type="primary", icon=":material/save:")
        if submitted:
            try:
                parsed = json.loads(defaults_text or "{}")
            except ValueError as error:
                show_error(f"Training defaults are not valid JSON: {error}.")
            else:
                changes = {
                    name: value
                    for name, value in {**values, "training_defaults": parsed}.items()
                    if current[name].editable and value is not None and value != current[name].value
                }
                if not changes:
                    st.info("Nothing changed.", icon=":material/info:")
                else:
                    try:
                        config.update_settings(**changes)
                    except Exception as error:  # noqa: BLE001 — the reason is shown, nothing was saved
                        show_error(error)
                    else:
                        done(f"Saved: {', '.join(sorted(changes))}.", rerun="app")
        if st.button("Restore defaults", key="settings_restore", icon=":material/restart_alt:"):
            confirm_restore()

    st.subheader("What the console runs with")
    show_table(
        pd.DataFrame(
            {
                "Setting": [r.name for r in rows],
                "Value": [
                    json.dumps(r.value, default=str) if isinstance(r.value, dict) else str(r.value) for r in rows
                ],
                "Source": [r.source for r in rows],
                "Environment variable": [r.environment_variable or "" for r in rows],
                "Applies": [r.applies for r in rows],
                "Default": [str(r.default) if r.default is not None else "" for r in rows],
                "What it is": [r.description for r in rows],
            }
        ),
        hide_index=True,
        # the value is what a reader came for: a registry path was cut to "/tmp/i1" beside the long descriptions
        column_config={"Value": st.column_config.TextColumn(width="large")},
    )

endpoints_section()
