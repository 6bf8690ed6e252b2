"""Training Management (seed 000 §1): create a job, watch the queue, follow live progress, act on jobs."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.common import attempt, paginate, show_broken, show_error
from pages.session import can, fragment
from services import ConsoleError
from services import datasets as library
from services.access import Role
from services.health import broken_files
from services.training import (
    FINISHED,
    OBJECTIVES,
    PRESETS,
    RESUMABLE,
    JobConfig,
    JobManager,
    JobState,
    JobStatus,
    build_config,
    field_help,
    fits_objective,
    job_manager,
    list_base_models,
)

STATUS_BADGES = {
    JobStatus.QUEUED: ":gray-badge[QUEUED]",
    JobStatus.RUNNING: ":blue-badge[RUNNING]",
    JobStatus.COMPLETED: ":green-badge[COMPLETED]",
    JobStatus.FAILED: ":red-badge[FAILED]",
    JobStatus.CANCELLED: ":orange-badge[CANCELLED]",
    JobStatus.INTERRUPTED: ":orange-badge[INTERRUPTED]",
}
FORM_PREFIX = "job_"
# What a job is about rather than how it trains: choosing a preset keeps these.
JOB_IDENTITY = ("adapter_type", "adapter_name", "base_model", "train_dataset", "eval_dataset")


def manager() -> JobManager:
    """The server's one manager (and worker threads) for this registry, shared by every browser session."""
    return job_manager()


def set_field(name: str, value) -> None:
    """Form widgets hold text for target modules; everything else as the config has it."""
    st.session_state[FORM_PREFIX + name] = (
        ", ".join(value) if name == "target_modules" and isinstance(value, list) else value
    )


def apply_preset() -> None:
    """A preset sets every training setting: what it leaves out goes back to the default, e.g. LoRA+ off."""
    preset = PRESETS[st.session_state["job_preset"]]
    for name, field in JobConfig.model_fields.items():
        if name not in JOB_IDENTITY:
            set_field(name, preset.get(name, field.get_default(call_default_factory=True)))


def load_config(config: JobConfig) -> None:
    """Clone: put a job's settings into the form for editing and resubmission."""
    for name, value in config.model_dump().items():
        set_field(name, value)
    set_field("adapter_name", f"{config.adapter_name}_v2")


def widget_defaults() -> None:
    for name, field in JobConfig.model_fields.items():
        if FORM_PREFIX + name not in st.session_state:
            set_field(name, None if field.is_required() else field.get_default(call_default_factory=True))


def job_form(datasets: list[library.DatasetRecord]) -> None:
    widget_defaults()
    if "job_preset" not in st.session_state:
        st.session_state["job_preset"] = next(iter(PRESETS))
        apply_preset()
    k = FORM_PREFIX
    st.selectbox("Preset", list(PRESETS), key="job_preset", on_change=apply_preset, help="Fills the settings below.")
    left, right = st.columns(2)
    left.selectbox(
        "Adapter type",
        ["retailer", "task", "policy", "domain"],
        key=k + "adapter_type",
        help=field_help("adapter_type"),
    )
    right.text_input(
        "Adapter name", key=k + "adapter_name", placeholder="amazon_schema_v1", help=field_help("adapter_name")
    )
    models = attempt(list_base_models, "retry_models") or []
    labels = {
        m.id: f"{m.id} ({m.source}, {m.parameters / 1e6:.0f}M params)" if m.parameters else f"{m.id} ({m.source})"
        for m in models
    }
    if st.session_state.get(k + "base_model") not in labels:
        st.session_state[k + "base_model"] = next(iter(labels), None)
    left.selectbox(
        "Base model", list(labels), format_func=labels.get, key=k + "base_model", help=field_help("base_model")
    )
    right.selectbox(
        "Training type", OBJECTIVES, format_func=str.upper, key=k + "objective", help=field_help("objective")
    )
    objective = st.session_state[k + "objective"]
    trainable = [d.name for d in datasets if fits_objective(d.kind, objective)]
    evaluable = ["", *[d.name for d in datasets if fits_objective(d.kind, objective, role="eval")]]
    if st.session_state.get(k + "train_dataset") not in trainable:
        st.session_state[k + "train_dataset"] = trainable[0] if trainable else None
    left.selectbox("Training dataset", trainable, key=k + "train_dataset", help=field_help("train_dataset"))
    if st.session_state.get(k + "eval_dataset") not in evaluable:
        st.session_state[k + "eval_dataset"] = ""
    right.selectbox(
        "Evaluation dataset",
        evaluable,
        format_func=lambda d: d or "none",
        key=k + "eval_dataset",
        help=field_help("eval_dataset"),
    )
    left.selectbox(
        "Quantization",
        ["none", "8bit", "4bit"],
        format_func={"none": "none (full-precision LoRA)", "8bit": "8-bit", "4bit": "4-bit (QLoRA, NF4)"}.get,
        key=k + "quantization",
        help=field_help("quantization"),
    )
    right.number_input(
        "Epochs",
        min_value=0.1,
        max_value=1000.0,
        step=0.5,
        value=None,
        key=k + "epochs",
        help=field_help("epochs"),
        placeholder="empty: use max steps",
    )
    with st.expander("Advanced settings"):
        a, b, c = st.columns(3)
        a.number_input("LoRA rank (r)", min_value=1, max_value=256, step=1, key=k + "lora_r", help=field_help("lora_r"))
        b.number_input(
            "LoRA alpha", min_value=1, max_value=1024, step=1, key=k + "lora_alpha", help=field_help("lora_alpha")
        )
        c.number_input(
            "LoRA dropout",
            min_value=0.0,
            max_value=0.9,
            step=0.05,
            key=k + "lora_dropout",
            help=field_help("lora_dropout"),
        )
        a.number_input(
            "Batch size", min_value=1, max_value=512, step=1, key=k + "batch_size", help=field_help("batch_size")
        )
        b.number_input(
            "Gradient accumulation",
            min_value=1,
            max_value=512,
            step=1,
            key=k + "gradient_accumulation",
            help=field_help("gradient_accumulation"),
        )
        c.number_input(
            "Learning rate",
            min_value=0.0,
            max_value=1.0,
            step=1e-5,
            format="%.6f",
            key=k + "learning_rate",
            help=field_help("learning_rate"),
        )
        a.selectbox(
            "Scheduler",
            ["linear", "cosine", "constant", "constant_with_warmup"],
            key=k + "scheduler",
            help=field_help("scheduler"),
        )
        b.number_input(
            "Warmup ratio",
            min_value=0.0,
            max_value=0.5,
            step=0.01,
            key=k + "warmup_ratio",
            help=field_help("warmup_ratio"),
        )
        c.number_input(
            "Max sequence length",
            min_value=16,
            max_value=32768,
            step=64,
            key=k + "max_seq_length",
            help=field_help("max_seq_length"),
        )
        a.number_input(
            "Max steps",
            min_value=1,
            max_value=10_000_000,
            step=10,
            value=None,
            key=k + "max_steps",
            help=field_help("max_steps"),
            placeholder="empty: use epochs",
        )
        b.number_input("Seed", min_value=0, max_value=2**31 - 1, step=1, key=k + "seed", help=field_help("seed"))
        c.toggle("Sequence packing", key=k + "packing", help=field_help("packing"))
        a.selectbox("Precision", ["auto", "fp32", "bf16"], key=k + "precision", help=field_help("precision"))
        b.number_input(
            "DPO beta", min_value=0.01, max_value=10.0, step=0.05, key=k + "dpo_beta", help=field_help("dpo_beta")
        )
        c.number_input(
            "Checkpoint every N steps",
            min_value=1,
            max_value=1_000_000,
            step=10,
            key=k + "save_steps",
            help=field_help("save_steps"),
        )
        a.toggle("Gradient checkpointing", key=k + "gradient_checkpointing", help=field_help("gradient_checkpointing"))
        b.number_input(
            "LoRA+ ratio (B / A learning rate)",
            min_value=1.0,
            max_value=64.0,
            step=1.0,
            value=None,
            key=k + "loraplus_lr_ratio",
            help=field_help("loraplus_lr_ratio"),
            placeholder="empty: off",
        )
        st.text_input(
            "Target modules (comma separated, or all-linear)",
            key=k + "target_modules",
            help=field_help("target_modules"),
        )
    start, batch = st.columns([1, 3])
    if start.button("🚀 Start Training", type="primary", key="start_training"):
        submit(form_values())
    with batch.popover("Batch submit: one job per dataset"):
        chosen = st.multiselect(
            "Datasets",
            trainable,
            key="batch_datasets",
            help="Each dataset gets its own job with the settings above; the adapter name gets "
            "the dataset name as a suffix.",
        )
        if st.button("Queue batch", key="batch_submit", disabled=not chosen):
            submit_batch(form_values(), chosen)


def form_values() -> dict:
    """The config as typed; JobConfig parses the module list and refuses what cannot run."""
    return {name: st.session_state.get(FORM_PREFIX + name) for name in JobConfig.model_fields}


def submit(values: dict) -> None:
    try:
        job = manager().submit(build_config(**values))
    except ConsoleError as error:
        st.error(str(error), icon="⚠️")
        return
    except Exception as error:  # noqa: BLE001 — never a traceback on the page
        show_error(error, "retry_submit")
        return
    st.success(f"Queued **{job.config.adapter_name}** as {job.id}.", icon="✅")


def submit_batch(values: dict, names: list[str]) -> None:
    """All configs pass validation and preflight before any job is queued."""
    try:
        configs = [
            build_config(
                **{
                    **values,
                    "train_dataset": name,
                    "adapter_name": f"{values['adapter_name'] or 'adapter'}_{name}"[:64],
                }
            )
            for name in names
        ]
        jobs = manager().submit_many(configs)
    except Exception as error:  # noqa: BLE001 — readable, never a traceback
        show_error(error, "retry_batch")
        return
    st.success(f"Queued {len(jobs)} jobs: {', '.join(j.config.adapter_name for j in jobs)}.", icon="✅")


def history(jobs: list[JobState]) -> None:
    """Every job, filterable and paginated, so 1,000 jobs stay one fast table."""
    left, right = st.columns([3, 2])
    needle = left.text_input("Search jobs", placeholder="adapter, dataset or job id", key="history_search").casefold()
    statuses = right.multiselect("Status", list(JobStatus), format_func=lambda s: s.value, key="history_status")
    shown = [
        j
        for j in jobs
        if (not statuses or j.status in statuses)
        and (not needle or needle in f"{j.id} {j.config.adapter_name} {j.config.train_dataset}".casefold())
    ]
    if not shown:
        st.info("No job matches these filters.")
        return
    page = paginate(shown, key="history_page")
    st.dataframe(
        pd.DataFrame(
            {
                "Job": [j.id for j in page],
                "Adapter": [j.config.adapter_name for j in page],
                "Status": [j.status.value for j in page],
                "Objective": [j.config.objective.upper() for j in page],
                "Dataset": [j.config.train_dataset for j in page],
                "Final loss": [j.final_metrics.get("final_loss", j.final_metrics.get("train_loss")) for j in page],
                "Created": [j.created for j in page],
                "Finished": [j.finished for j in page],
            }
        ),
        hide_index=True,
        column_config={
            "Created": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
            "Finished": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        },
    )


@st.fragment(run_every=2)
def queue_summary() -> None:
    jobs = attempt(manager().all_jobs, "retry_queue") or []
    counts = {status: sum(j.status == status for j in jobs) for status in JobStatus}
    with st.container(border=True):
        st.markdown("**Training queue**")
        st.metric("Active", counts[JobStatus.RUNNING])
        st.metric("Queued", counts[JobStatus.QUEUED])
        st.metric("Completed", counts[JobStatus.COMPLETED])
        st.caption(
            f"{counts[JobStatus.FAILED]} failed · {counts[JobStatus.CANCELLED]} cancelled · "
            f"{counts[JobStatus.INTERRUPTED]} interrupted · limit {manager().concurrency} at a time"
        )


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h {minutes % 60}m" if minutes >= 60 else f"{minutes}m {secs:02d}s"


def job_card(job: JobState) -> None:
    progress = manager().progress(job.id)
    with st.container(border=True):
        head, action = st.columns([5, 1])
        head.markdown(
            f"**{job.config.adapter_name}** {STATUS_BADGES[job.status]}  \n"
            f"`{job.id}` · {job.config.objective.upper()} · {job.config.train_dataset}"
        )
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            if action.button("Cancel", key=f"cancel_{job.id}"):
                attempt(lambda: manager().cancel(job.id), f"retry_cancel_{job.id}")
        if job.status == JobStatus.COMPLETED:
            st.progress(1.0, text="Completed")
        else:
            st.progress(progress.fraction, text=f"{progress.fraction:.0%}")
        epoch = f"{progress.epoch:.2f}" if progress.epoch is not None else "—"
        loss = f"{progress.loss:.3f}" if progress.loss is not None else "—"
        speed = f"{progress.tokens_per_second:,.0f} tok/s" if progress.tokens_per_second else "—"
        lr = f"{progress.learning_rate:.2e}" if progress.learning_rate is not None else "—"
        st.caption(
            f"Step {progress.step}/{progress.max_steps or '—'} | Epoch {epoch} | Loss {loss} | LR {lr} | "
            f"{speed} | ETA {fmt_eta(progress.eta_seconds)}"
        )
        if job.error:
            st.error(job.error, icon="⚠️")


@fragment(run_every=2)  # its Cancel buttons write: every rerun acts as the signed-in user
def live_jobs() -> None:
    jobs = attempt(manager().all_jobs, "retry_jobs")
    if jobs is None:
        return
    active = [j for j in jobs if j.status in (JobStatus.RUNNING, JobStatus.QUEUED)]
    recent = [j for j in jobs if j.status in FINISHED][:3]
    if not jobs:
        st.info("No training jobs yet. Fill in the form and press **Start Training**.")
    for job in [*active, *recent]:
        job_card(job)


def loss_chart(rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    figure = go.Figure()
    if "loss" in frame:
        train = frame.dropna(subset=["loss"])
        figure.add_trace(go.Scatter(x=train["step"], y=train["loss"], name="train loss", line=dict(color="#3b82f6")))
    if "eval_loss" in frame:
        held = frame.dropna(subset=["eval_loss"])
        figure.add_trace(
            go.Scatter(
                x=held["step"], y=held["eval_loss"], name="eval loss", mode="lines+markers", line=dict(color="#f59e0b")
            )
        )
    figure.update_layout(
        height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="step", yaxis_title="loss", title="Loss curve"
    )
    st.plotly_chart(figure)


@fragment(run_every=3)  # Resume / Restart write
def job_detail(job_id: str) -> None:
    job = attempt(lambda: manager().get(job_id), "retry_job_detail")
    if job is None:
        return
    st.markdown(f"**{job.config.adapter_name}** {STATUS_BADGES[job.status]} · `{job.id}`")
    rows = manager().metrics(job_id)
    if rows:
        loss_chart(rows)
    else:
        st.caption("No metrics yet: they appear after the first logged step.")
    if job.final_metrics:
        st.json(job.final_metrics, expanded=False)
    actions = st.columns(4)
    if job.status in RESUMABLE and manager().latest_checkpoint(job_id):
        if actions[0].button("▶️ Resume", key=f"resume_{job_id}", help="Continue from the last checkpoint"):
            attempt(lambda: manager().resume(job_id), "retry_resume")
    if job.status in FINISHED and actions[1].button(
        "🔁 Restart", key=f"restart_{job_id}", help="A new job, same config"
    ):
        attempt(lambda: manager().restart(job_id), "retry_restart")
    actions[2].button(
        "📋 Clone config",
        key=f"clone_{job_id}",
        on_click=load_config,
        args=(job.config,),
        help="Load these settings into the form above",
    )
    log = manager().log_text(job_id)
    needle = st.text_input("Search the log", key=f"log_search_{job_id}")
    lines = [line for line in log.splitlines() if needle.casefold() in line.casefold()] if needle else log.splitlines()
    st.code("\n".join(lines[-200:]) or "(empty)", language="log")
    actions[3].download_button(
        "📥 Export log", data=log, file_name=f"{job_id}.log", key=f"log_export_{job_id}", on_click="ignore"
    )


st.title("🚀 LoRA Training Management")
st.caption(
    "Train LoRA / QLoRA adapters in this process with PEFT and TRL. Jobs keep their state on disk: "
    "a restart loses nothing."
)
show_broken(attempt(lambda: broken_files("jobs"), "retry_broken") or [])
datasets = attempt(library.list_datasets, "retry_datasets")
jobs = attempt(manager().all_jobs, "retry_job_list") or []
form_col, queue_col = st.columns([3, 1])
with form_col:
    st.subheader("Create training job")
    if not can(Role.PRACTITIONER):
        st.info("Your role can follow jobs but not start them; ask an admin for the practitioner role.")
    elif datasets:
        job_form(datasets)
    elif datasets is not None:
        st.info(
            "There is no dataset to train on yet: upload one in the Dataset Library (or run `make run` for the demo)."
        )
with queue_col:
    queue_summary()
st.subheader("Active & recent jobs")
live_jobs()
if jobs:
    st.subheader("Training history")
    history(jobs)
    st.subheader("Job details")
    job_id = st.selectbox(
        "Job",
        [j.id for j in jobs],
        key="job_selected",
        format_func=lambda i: next(f"{j.config.adapter_name} · {j.status.value} · {i}" for j in jobs if j.id == i),
    )
    job_detail(job_id)
