"""System Health: CPU, memory, disk, this server's memory and each NVIDIA GPU,
about the last hour of samples, and what is running now."""

import pandas as pd
import streamlit as st

from services.evaluation import FINISHED as EVAL_FINISHED
from services.evaluation import list_evaluations
from services.monitoring import health_trend, system_health
from services.training import FINISHED as JOB_FINISHED
from services.training import list_jobs
from views.common import attempt, human_size, page_title, plain, show_table

page_title("System Health")
st.caption("Sampled every 5 s by one thread of this server; about the last hour is kept in memory.")


@st.fragment(run_every=5)
def live() -> None:
    health = attempt(system_health, "retry_health")
    if health is None:
        return
    # The last hour as a line in each card (Streamlit's metric chart): the two Plotly charts this page drew cost a
    # new browser tab 2-4 s of main-thread time in Plotly's 4.7 MB bundle before they showed (Chromium profile).
    lines = attempt(health_trend, "retry_health_trend")
    drawn = lines is not None and len(lines.cpu_percent) > 1  # a line needs two points
    # Two cards a row: in four columns (148 px each in an 1100 px window) "This server (RSS)" and its value were cut.
    cards = [*st.columns(2), *st.columns(2)]
    cards[0].metric(
        "CPU",
        f"{health.cpu_percent:.0f}%",
        help=f"All {health.cpu_count} logical cores.",
        chart_data=lines.cpu_percent if drawn else None,
        border=True,
        height="stretch",
    )
    cards[1].metric(
        "Memory",
        f"{health.memory_percent:.0f}%",
        help=f"{human_size(health.memory_used_bytes)} of {human_size(health.memory_total_bytes)} in use.",
        chart_data=lines.memory_percent if drawn else None,
        border=True,
        height="stretch",
    )
    cards[2].metric(
        "Registry disk",
        f"{health.disk_percent:.0f}%",
        help=f"{human_size(health.disk_used_bytes)} of {human_size(health.disk_total_bytes)} on the registry's volume.",
        border=True,
        height="stretch",
    )
    cards[3].metric(
        "This server (RSS)",
        human_size(health.process_rss_bytes),
        help="Resident memory of this console's process; the line is in MB.",
        chart_data=lines.process_rss_mb if drawn else None,
        chart_type="area",
        border=True,
        height="stretch",
    )
    st.caption(
        "Lines: about the last hour, at most 120 points (means of consecutive samples)."
        if drawn
        else "The last hour's lines appear from the second sample (one every 5 s)."
    )
    st.subheader("GPUs")
    if not health.gpus:
        st.info(
            f"{health.gpu_status}. Training and inference run on the CPU; GPU utilisation, memory, temperature "
            "and power appear here on a machine with an NVIDIA driver.",
            icon=":material/memory:",
        )
    else:
        if health.gpu_status != "ok":
            st.warning(plain(health.gpu_status), icon=":material/warning:")
        gpu_lines = lines.gpu_percent if lines is not None else {}
        show_table(
            pd.DataFrame(
                {
                    "GPU": [f"{g.index}: {g.name}" for g in health.gpus],
                    "Utilisation %": [g.utilization_percent for g in health.gpus],
                    "Last hour %": [[v for v in gpu_lines.get(g.index, []) if v is not None] for g in health.gpus],
                    "Memory": [
                        f"{human_size(g.memory_used_bytes)} / {human_size(g.memory_total_bytes)}" for g in health.gpus
                    ],
                    "Temperature °C": [g.temperature_c for g in health.gpus],
                    "Power W": [g.power_w for g in health.gpus],
                }
            ),
            hide_index=True,
            column_config={"Last hour %": st.column_config.LineChartColumn(y_min=0, y_max=100)},
        )
    st.subheader("Running now")
    jobs = [j for j in list_jobs() if j.status not in JOB_FINISHED]
    runs = [r for r in list_evaluations() if r.status not in EVAL_FINISHED]
    if not jobs and not runs:
        st.caption("No training job or evaluation is queued or running.")
    for job in jobs:
        st.text(f"Training {job.id} · {job.config.adapter_name} · {job.status.value}")
    for run in runs:
        st.text(f"Evaluation {run.id} · {run.label} · {run.status.value} · {run.done}/{run.total}")


live()
