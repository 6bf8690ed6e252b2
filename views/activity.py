"""Activity: one timeline of the workspace with filters and export, and a job's live log."""

from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from services.activity import activity_areas, all_jobs, export_activity, job_log, recent_activity
from views.common import attempt, page_title, paginate, show_table

page_title("Activity")
st.caption("Everything that happened in this registry: uploads, mappings, jobs, adapters, federations, publishes.")

timeline, logs = st.tabs(["Timeline", "Job logs"])

with timeline:
    filters = st.columns([2, 2, 3], vertical_alignment="bottom")
    areas = attempt(activity_areas, "retry_activity_areas") or []
    kinds = filters[0].multiselect("Kind", areas, key="activity_kinds", placeholder="all kinds")
    today = datetime.now(UTC).date()
    span = filters[1].date_input(
        "Between (UTC)", value=(today - timedelta(days=30), today), max_value=today, key="activity_dates"
    )
    text = filters[2].text_input("Search", key="activity_text", placeholder="text in the event or its details")
    since = datetime.combine(span[0], time.min, UTC) if len(span) >= 1 else None
    until = datetime.combine(span[1], time.min, UTC) + timedelta(days=1) if len(span) == 2 else None
    events = attempt(
        lambda: recent_activity(None, kinds=kinds or None, since=since, until=until, text=text), "retry_activity"
    )
    if events is not None and not events:
        st.info("No activity matches." if kinds or text else "Nothing has happened yet.", icon=":material/info:")
    elif events:
        exports = st.columns([1, 1, 4])
        exports[0].download_button(
            "Export CSV",
            data=export_activity(events, "csv"),
            file_name="activity.csv",
            mime="text/csv",
            on_click="ignore",
            icon=":material/download:",
            key="activity_csv",
        )
        exports[1].download_button(
            "Export JSONL",
            data=export_activity(events, "jsonl"),
            file_name="activity.jsonl",
            mime="application/jsonl",
            on_click="ignore",
            icon=":material/download:",
            key="activity_jsonl",
        )
        page = paginate(events, key="activity_page")
        table = pd.DataFrame(
            {
                "When (UTC)": pd.to_datetime([e.get("ts") for e in page], errors="coerce"),
                "Kind": [e.get("kind", "") for e in page],
                "What happened": [e.get("message", "") for e in page],
            }
        )
        show_table(
            table,
            hide_index=True,
            column_config={"When (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")},
        )

with logs:
    jobs = attempt(all_jobs, "retry_activity_jobs")
    if jobs is not None and not jobs:
        st.info("No training or publish jobs yet.", icon=":material/info:")
    elif jobs:
        labels = {j.id: f"{j.id} · {j.kind} · {j.label}" for j in jobs}  # no status: it changes under the picker
        left, right = st.columns([3, 2])
        job_id = left.selectbox("Job", list(labels), format_func=labels.get, key="activity_job")
        search = right.text_input("Search the log", key="activity_log_search")

        @st.fragment(run_every=2)
        def live_log() -> None:
            """Re-read the log every 2 s while the page is open: a running job's lines appear as they are written."""
            lines = attempt(lambda: job_log(job_id, search), "retry_job_log")
            if lines is None:
                return
            st.caption(
                f"{len(lines):,} line(s){' matching' if search else ''} · refreshed {datetime.now(UTC):%H:%M:%S} UTC"
            )
            st.code("\n".join(lines[-500:]) or "(no lines)", language=None, height=360)
            st.download_button(
                "Export log",
                data="\n".join(lines) + "\n",
                file_name=f"{job_id}.log",
                mime="text/plain",
                on_click="ignore",
                icon=":material/download:",
                key="activity_log_export",
            )

        live_log()
