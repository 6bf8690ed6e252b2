"""Settings (seed 002): what the console runs with and where each value comes from; the editable ones saved to
the registry's settings file and applied at once where the running console can take them."""

import json

import pandas as pd
import streamlit as st

from pages.common import attempt, show_error
from services import settings as config

st.title(":material/settings: Settings")
st.caption(
    "Values come from the defaults, the settings file in the registry, or environment variables (which win). "
    "Values set by the environment are shown but cannot be edited here."
)


def bounds(name: str) -> dict:
    """min / max of a numeric setting, read from the Settings model (the one owner of each rule)."""
    found = {}
    for item in config.Settings.model_fields[name].metadata:
        for attribute, key in (("ge", "min_value"), ("le", "max_value")):
            if getattr(item, attribute, None) is not None:
                found[key] = getattr(item, attribute)
    return found


def help_of(name: str) -> str:
    return config.Settings.model_fields[name].description or ""


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
        st.session_state["settings_flash"] = "Defaults restored."
        st.rerun()


if flash := st.session_state.pop("settings_flash", None):
    st.success(flash, icon=":material/check_circle:")
if problem := attempt(config.settings_file_problem, "retry_settings_problem"):
    st.warning(problem, icon=":material/warning:")

rows = attempt(config.settings_table, "retry_settings")
if rows:
    current = {row.name: row for row in rows}
    with st.form("settings_form"):
        st.subheader("Editable")
        left, right = st.columns(2)
        values = {
            "max_concurrent_jobs": left.number_input(
                "Max concurrent jobs",
                value=current["max_concurrent_jobs"].value,
                step=1,
                disabled=not current["max_concurrent_jobs"].editable,
                key="settings_max_concurrent_jobs",
                help=help_of("max_concurrent_jobs") + " Applied at once.",
                **bounds("max_concurrent_jobs"),
            ),
            "max_loaded_models": right.number_input(
                "Max loaded models",
                value=current["max_loaded_models"].value,
                step=1,
                disabled=not current["max_loaded_models"].editable,
                key="settings_max_loaded_models",
                help=help_of("max_loaded_models") + " Applied at once (least recently used models are unloaded).",
                **bounds("max_loaded_models"),
            ),
            "cpu_hour_price": left.number_input(
                "Price per CPU-hour (USD)",
                value=float(current["cpu_hour_price"].value),
                step=0.01,
                format="%.2f",
                disabled=not current["cpu_hour_price"].editable,
                key="settings_cpu_hour_price",
                help=help_of("cpu_hour_price"),
                **{k: float(v) for k, v in bounds("cpu_hour_price").items()},
            ),
            "gpu_hour_price": right.number_input(
                "Price per GPU-hour (USD)",
                value=float(current["gpu_hour_price"].value),
                step=0.01,
                format="%.2f",
                disabled=not current["gpu_hour_price"].editable,
                key="settings_gpu_hour_price",
                help=help_of("gpu_hour_price"),
                **{k: float(v) for k, v in bounds("gpu_hour_price").items()},
            ),
            "page_size": left.number_input(
                "Rows per page",
                value=current["page_size"].value,
                step=5,
                disabled=not current["page_size"].editable,
                key="settings_page_size",
                help=help_of("page_size"),
                **bounds("page_size"),
            ),
            "theme": right.segmented_control(
                "Theme",
                ["light", "dark"],
                default=current["theme"].value,
                disabled=not current["theme"].editable,
                key="settings_theme",
                help=help_of("theme") + " Applied on the next page load.",
            ),
        }
        defaults_text = st.text_area(
            "Training defaults (JSON)",
            value=json.dumps(current["training_defaults"].value, indent=1),
            height=100,
            max_chars=4000,
            help=help_of("training_defaults")
            + ' e.g. {"epochs": 2, "lora_r": 32}. Checked by the same rules as a job.',
            disabled=not current["training_defaults"].editable,
            key="settings_training_defaults",
        )
        submitted = st.form_submit_button("Save", type="primary", icon=":material/save:")
    if submitted:
        try:
            parsed = json.loads(defaults_text or "{}")
        except ValueError as error:
            st.error(f"Training defaults are not valid JSON: {error}.", icon=":material/error:")
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
                    st.error(str(error), icon=":material/error:")
                else:
                    st.session_state["settings_flash"] = f"Saved: {', '.join(sorted(changes))}."
                    st.rerun()
    if st.button("Restore defaults", key="settings_restore", icon=":material/restart_alt:"):
        confirm_restore()

    st.subheader("What the console runs with")
    st.dataframe(
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
    )
