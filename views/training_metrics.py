"""Training Metrics: loss, eval loss, learning rate and tokens/s of any chosen
jobs overlaid by step, and a table of the settings in which those jobs differ."""

import pandas as pd
import streamlit as st

from services.monitoring import training_curves
from services.training import list_jobs
from views.charts import line_figure
from views.common import attempt, page_title, plain, show_table

CURVES = {
    "loss": "Training loss",
    "eval_loss": "Eval loss",
    "learning_rate": "Learning rate",
    "tokens_per_second": "Tokens/s",
}

page_title("Training Metrics")
jobs = attempt(list_jobs, "retry_metric_jobs")
if jobs is not None and not jobs:
    st.info("No training jobs yet. Start one on the Training Jobs page.")
elif jobs:
    labels = {j.id: f"{j.config.adapter_name} · {j.id}" for j in jobs}  # no status: it changes under the picker
    short = {j.id: f"{j.config.adapter_name} · {j.id[-6:]}" for j in jobs}  # a line's name in the legend
    if "metrics_jobs" not in st.session_state:
        st.session_state["metrics_jobs"] = [j.id for j in jobs[:2]]
    picked = st.multiselect("Jobs", list(labels), format_func=labels.get, key="metrics_jobs", max_selections=8)
    if picked:
        curves = attempt(lambda: training_curves(picked), "retry_curves") or {}
        lines = [
            {"job": short[job_id], "step": row.get("step"), **row} for job_id, rows in curves.items() for row in rows
        ]
        frame = pd.DataFrame(lines)
        if frame.empty:
            st.info("These jobs have not logged a step yet.")
        else:
            silent = [short[job_id] for job_id in picked if job_id in curves and not curves[job_id]]
            if silent:
                st.caption(plain(f"No steps logged (no line): {', '.join(silent)}."))
            columns = st.columns(2)
            for index, (metric, title) in enumerate(CURVES.items()):
                if metric in frame and frame[metric].notna().any():
                    data = frame[frame[metric].notna()]
                    columns[index % 2].plotly_chart(
                        line_figure(
                            data,
                            "step",
                            metric,
                            by="job",
                            title=title,
                            markers=metric == "eval_loss",
                            smooth=metric == "loss",
                        ),
                        key=f"metrics_{metric}",
                    )
        configs = {short[j.id]: j.config.model_dump(mode="json") for j in jobs if j.id in picked}
        table = pd.DataFrame(configs)
        if len(configs) > 1:
            differing = table[table.astype(str).nunique(axis=1) > 1]
            st.subheader("Settings that differ")
            if differing.empty:
                st.caption("The chosen jobs share every setting.")
            else:
                show_table(differing.astype(str), key="metrics_config_diff")
        with st.expander("All settings"):
            show_table(table.astype(str))
