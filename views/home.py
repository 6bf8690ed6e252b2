"""Home: what is in the registry, what happened lately, and where to go next."""

import pandas as pd
import streamlit as st

from services.health import broken_files
from services.overview import recent_activity, registry_overview
from views.common import attempt, page_title, plain, show_broken, show_table

# Equal cards in as many columns of at least 148 px ("Schema mappings" whole) as the row holds: five in one row
# from 1280 px (sidebar open), filling it; in a narrower window the fifth wraps into a column of the same width
# (a wrapping flex row left it alone, stretched across the whole second row, at 1100 px).
CARD_GRID = """<style>.st-key-home_cards {display: grid !important; gap: 0.5rem;
    grid-template-columns: repeat(auto-fit, minmax(148px, 1fr));}
    .st-key-home_cards > div, .st-key-home_cards > div > div {height: 100%;}</style>"""

page_title("RMN LoRA Console")
st.caption(
    "Datasets, retailer schema mappings, LoRA adapters and their federations for a retail media network: "
    "one console, one machine."
)

show_broken(attempt(broken_files, "retry_broken") or [])
overview = attempt(registry_overview, "retry_overview")
if overview is not None:
    cards = [
        ("Datasets", f"{overview.datasets:,}", f"{overview.examples:,} examples"),
        (
            "Schema mappings",
            overview.mappings,
            f"{overview.active_mappings} active · {overview.mappings - overview.active_mappings} draft",
        ),
        ("Adapters", overview.adapters, "trained LoRA adapters"),
        ("Training jobs", overview.jobs, "queued, running and finished"),
        ("Federations", overview.federations, "saved compositions of adapters"),
    ]
    st.html(CARD_GRID)
    with st.container(key="home_cards"):
        for label, value, note in cards:
            with st.container(border=True, height="stretch"):
                st.metric(
                    label, value, help="Datasets in the library (latest versions)" if label == "Datasets" else None
                )
                st.caption(plain(note))


@st.fragment(run_every=10)
def health_strip() -> None:
    """Seed 002's Health Monitor, compact: the machine now, with the full view one click away."""
    from services.monitoring import system_health

    health = attempt(system_health, "retry_home_health")
    if health is None:
        return
    with st.container(border=True, horizontal=True, vertical_alignment="center"):
        st.metric("CPU", f"{health.cpu_percent:.0f}%")
        st.metric("Memory", f"{health.memory_percent:.0f}%")
        st.metric("Disk", f"{health.disk_percent:.0f}%")
        st.metric(
            "GPU",
            f"{max((g.utilization_percent or 0) for g in health.gpus):.0f}%" if health.gpus else "none",
            help=health.gpu_status,
        )
        st.page_link("views/system_health.py", label="System Health", icon=":material/monitor_heart:")


health_strip()

st.subheader("Quick actions")
with st.container(horizontal=True, gap="medium"):  # wraps instead of cutting a link's label in a narrow window
    st.page_link("views/dataset_library.py", label="Upload or validate a dataset", icon=":material/dataset:")
    st.page_link("views/schema_mappings.py", label="Edit a retailer mapping", icon=":material/schema:")
    st.page_link("views/data_browser.py", label="Browse raw retailer data", icon=":material/table_view:")
    st.page_link("views/training_jobs.py", label="Train an adapter", icon=":material/model_training:")
    st.page_link("views/federations.py", label="Compose and test a federation", icon=":material/hub:")
    st.page_link("views/playground.py", label="Try a prompt in the Playground", icon=":material/science:")

st.subheader("Recent activity")
events = attempt(lambda: recent_activity(limit=10), "retry_activity")
if events:
    table = pd.DataFrame(events)[["ts", "kind", "message"]]
    table["ts"] = pd.to_datetime(table["ts"])
    show_table(
        table.rename(columns={"ts": "When (UTC)", "kind": "Event", "message": "Details"}),
        hide_index=True,
        column_config={"When (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")},
    )
elif events is not None:
    st.info("Nothing has happened yet. Upload a dataset or run `make run` to load the demo data.")
