"""The console's colour schemes: each one owns its whole palette here (the seeds' colours for light), and app.py
applies the saved one to Streamlit's theme options, which Streamlit sends to the browser at the start of every run.
`.streamlit/config.toml` sets no colour, so no light value can outlive a switch to dark."""

from streamlit import config as streamlit_config

PALETTES: dict[str, dict[str, str]] = {
    "light": {
        "base": "light",
        "primaryColor": "#3b82f6",
        "backgroundColor": "#f8f9fa",
        "secondaryBackgroundColor": "#ffffff",
        "textColor": "#1f2937",
    },
    "dark": {
        "base": "dark",
        "primaryColor": "#3b82f6",
        "backgroundColor": "#111827",
        "secondaryBackgroundColor": "#1f2937",
        "textColor": "#f3f4f6",
    },
}


def apply_theme(name: str) -> bool:
    """Set every theme option of palette `name` that differs from what the server holds; True when one changed
    (the browser sees it from the next run, so the caller reruns once; an unchanged palette never reruns)."""
    changed = False
    for option, value in PALETTES[name].items():
        key = f"theme.{option}"
        if streamlit_config.get_option(key) != value:
            streamlit_config.set_option(key, value)
            changed = True
    return changed
