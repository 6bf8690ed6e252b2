"""System Health (seed 000, Analytics & Monitoring): CPU, memory, disk, this server's memory and each NVIDIA GPU,
about the last hour of samples, and what is running now."""

import pandas as pd
import streamlit as st

from services.evaluation import FINISHED as EVAL_FINISHED
from services.evaluation import list_evaluations
from services.monitoring import health_history, system_health
from services.training import FINISHED as JOB_FINISHED
from services.training import list_jobs
from views.charts import line_figure
from views.common import attempt, human_size, show_table

st.title("System Health")
st.caption("Sampled every 5 s by one thread of this server; about the last hour is kept in memory.")


@st.fragment(run_every=5)
def live() -> None:
    health = attempt(system_health, "retry_health")
    if health is None:
        return
    cards = st.columns(4)
    cards[0].metric("CPU", f"{health.cpu_percent:.0f}%", help=f"All {health.cpu_count} logical cores.")
    cards[1].metric(
        "Memory",
        f"{health.memory_percent:.0f}%",
        help=f"{human_size(health.memory_used_bytes)} of {human_size(health.memory_total_bytes)} in use.",
    )
    cards[2].metric(
        "Registry disk",
        f"{health.disk_percent:.0f}%",
        help=f"{human_size(health.disk_used_bytes)} of {human_size(health.disk_total_bytes)} on the registry's volume.",
    )
    cards[3].metric("This server (RSS)", human_size(health.process_rss_bytes))
    st.subheader("GPUs")
    if not health.gpus:
        st.info(
            f"{health.gpu_status}. Training and inference run on the CPU; GPU utilisation, memory, temperature "
            "and power appear here on a machine with an NVIDIA driver.",
            icon=":material/memory:",
        )
    else:
        if health.gpu_status != "ok":
            st.warning(health.gpu_status, icon=":material/warning:")
        show_table(
            pd.DataFrame(
                {
                    "GPU": [f"{g.index}: {g.name}" for g in health.gpus],
                    "Utilisation %": [g.utilization_percent for g in health.gpus],
                    "Memory": [
                        f"{human_size(g.memory_used_bytes)} / {human_size(g.memory_total_bytes)}" for g in health.gpus
                    ],
                    "Temperature °C": [g.temperature_c for g in health.gpus],
                    "Power W": [g.power_w for g in health.gpus],
                }
            ),
            hide_index=True,
        )
    history = health_history()
    if len(history) > 1:
        frame = pd.DataFrame(
            {
                "time": [s.time for s in history],
                "CPU %": [s.cpu_percent for s in history],
                "Memory %": [s.memory_percent for s in history],
                "Server RSS (MB)": [s.process_rss_bytes / 2**20 for s in history],
                **(
                    {f"GPU {g.index} %": [_gpu(s, g.index) for s in history] for g in health.gpus}
                    if health.gpus
                    else {}
                ),
            }
        )
        percent = [c for c in frame.columns if c.endswith("%")]
        st.plotly_chart(
            line_figure(frame, "time", percent, y_range=(0, 100), title="Utilisation"), key="health_percent_chart"
        )
        st.plotly_chart(line_figure(frame, "time", "Server RSS (MB)", title="This server's memory"), key="health_rss")
    st.subheader("Running now")
    jobs = [j for j in list_jobs() if j.status not in JOB_FINISHED]
    runs = [r for r in list_evaluations() if r.status not in EVAL_FINISHED]
    if not jobs and not runs:
        st.caption("No training job or evaluation is queued or running.")
    for job in jobs:
        st.text(f"Training {job.id} · {job.config.adapter_name} · {job.status.value}")
    for run in runs:
        st.text(f"Evaluation {run.id} · {run.label} · {run.status.value} · {run.done}/{run.total}")


def _gpu(sample, index: int) -> float | None:
    return next((g.utilization_percent for g in sample.gpus if g.index == index), None)


live()
