"""Performance Dashboard: every target that served requests or was evaluated,
with accuracy, latency, size, requests, error rate, tokens/s and cost; throughput and errors over time; the cost
of each training job and evaluation."""

import pandas as pd
import streamlit as st

from services.monitoring import adapter_performance, job_costs, prices, request_timeline
from views.charts import bar_figure, line_figure
from views.common import attempt, human_size, page_title, show_table

page_title("Performance Dashboard")
window = st.segmented_control(
    "Window", ["1 hour", "24 hours", "7 days", "All"], default="24 hours", key="perf_window", required=True
)
hours = {"1 hour": 1, "24 hours": 24, "7 days": 24 * 7, "All": None}[window]
price = attempt(prices, "retry_prices")
if price is not None:
    st.caption(
        f"Costs use ${price['cpu_hour']:.2f} per CPU-hour (this machine) and ${price['gpu_hour']:.2f} per GPU-hour "
        "(settings `RMN_LORA_CPU_HOUR_PRICE`, `RMN_LORA_GPU_HOUR_PRICE`). A request costs its latency."
    )

rows = attempt(lambda: adapter_performance(hours), "retry_performance")
if rows is not None and not rows:
    st.info(
        "No requests or evaluations yet. Generations from the Playground, the Federation page, evaluations and the "
        "API are logged here."
    )
elif rows:
    st.subheader("Adapters and models")
    show_table(
        pd.DataFrame(
            {
                "Target": [r.target for r in rows],
                "Accuracy": [r.accuracy for r in rows],
                "Evaluated on": [r.accuracy_dataset or "—" for r in rows],
                "p50 ms": [r.p50_latency_ms for r in rows],
                "p95 ms": [r.p95_latency_ms for r in rows],
                "Size": [human_size(r.size_bytes) if r.size_bytes else "—" for r in rows],
                "Requests": [r.requests for r in rows],
                "Errors": [r.error_rate for r in rows],
                "Tokens/s": [r.tokens_per_second for r in rows],
                "Cost": [r.cost_usd for r in rows],
                "Per 1k tokens": [r.cost_per_1k_tokens for r in rows],
            }
        ),
        hide_index=True,
        # numbers, not bars, and short headers: all eleven columns fit the page at 1440 px (the last was cut off)
        column_config={
            "Accuracy": st.column_config.NumberColumn(format="percent"),
            "p50 ms": st.column_config.NumberColumn(format="%.0f", help="Median latency of a request"),
            "p95 ms": st.column_config.NumberColumn(format="%.0f", help="95th percentile latency of a request"),
            "Errors": st.column_config.NumberColumn(format="percent", help="Share of requests that failed"),
            "Tokens/s": st.column_config.NumberColumn(format="%.1f"),
            "Cost": st.column_config.NumberColumn(format="$%.5f", help="USD, over the window"),
            "Per 1k tokens": st.column_config.NumberColumn(format="$%.5f", help="USD per 1,000 generated tokens"),
        },
    )

timeline = attempt(lambda: request_timeline(hours or 24 * 365), "retry_timeline")
if timeline:
    frame = pd.DataFrame(timeline)
    st.subheader("Requests over time")
    left, right = st.columns(2)
    left.plotly_chart(bar_figure(frame, "time", "requests", title="Requests per minute"), key="perf_requests")
    right.plotly_chart(
        line_figure(frame, "time", "error_rate", title="Error rate", y_range=(0, 1), markers=True), key="perf_errors"
    )

costs = attempt(job_costs, "retry_costs")
if costs:
    st.subheader("Cost of training jobs and evaluations")
    frame = pd.DataFrame(costs)
    st.metric("Total", f"${frame['cost_usd'].sum():.4f}", help="Wall time x devices x price, over every listed run.")
    show_table(
        frame.rename(
            columns={
                "kind": "Kind",
                "id": "Run",
                "what": "What",
                "status": "Status",
                "finished": "Finished",
                "seconds": "Seconds",
                "device": "Device",
                "cost_usd": "Cost (USD)",
            }
        ),
        hide_index=True,
        column_config={
            "Finished": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "Cost (USD)": st.column_config.NumberColumn(format="$%.5f"),
        },
    )
