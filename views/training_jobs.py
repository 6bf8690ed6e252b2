"""Training Management: create a job, watch the queue, follow live progress, act on jobs."""

from functools import partial

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from services import ConsoleError
from services import datasets as library
from services.health import broken_files
from services.settings import adapter_name_for, new_job_values
from services.training import (
    FINISHED,
    PRESETS,
    RESUMABLE,
    JobConfig,
    JobManager,
    JobState,
    JobStatus,
    applies_to,
    build_config,
    fits_objective,
    job_manager,
    list_base_models,
    plan_job,
    training_stack_ready,
)
from views.charts import smoothed_traces
from views.common import (
    JOB_WIDGETS,
    adapter_type_mismatch,
    attempt,
    current_values,
    done,
    field_shape,
    form_key,
    form_values,
    form_widget,
    job_widget,
    keep_undrawn,
    load_demo_button,
    load_form,
    page_title,
    paginate,
    parameter_count,
    plain,
    show_broken,
    show_error,
    show_flash,
    show_table,
    values_table,
    warm_training_stack_on_a_stay,
)
from views.session import fragment, may

STATUS_BADGES = {
    JobStatus.QUEUED: ":gray-badge[QUEUED]",
    JobStatus.RUNNING: ":blue-badge[RUNNING]",
    JobStatus.COMPLETED: ":green-badge[COMPLETED]",
    JobStatus.FAILED: ":red-badge[FAILED]",
    JobStatus.CANCELLED: ":orange-badge[CANCELLED]",
    JobStatus.INTERRUPTED: ":orange-badge[INTERRUPTED]",
}
FORM = "job"
ADVANCED = "job_advanced"  # the Advanced settings expander (open or closed)
LOSS_CURVE = "job_loss_curve"  # Job details' loss chart toggle (on or off, whichever job is picked)
# The job log in the code font, as a log reads (plain text: no highlighter to load).
# st.text's inner span sets the body font itself, so the rule names it too.
LOG_STYLE = (
    "<style>[class*='st-key-job_log_'] .stText, [class*='st-key-job_log_'] .stText span "
    "{font-family: 'Source Code Pro', monospace; font-size: 0.8rem}</style>"
)
CARDS = 4  # job cards shown: every active job, then the latest finished ones up to this many
JOB_FORM_TOP = (  # above "Advanced settings"; every other field of JOB_WIDGETS is in it, in that order
    "adapter_type",
    "adapter_name",
    "base_model",
    "objective",
    "train_dataset",
    "eval_dataset",
    "quantization",
    "epochs",
    "evaluate_base_first",
)
# What a job is about rather than how it trains: choosing a preset keeps these.
JOB_IDENTITY = ("adapter_type", "adapter_name", "base_model", "train_dataset", "eval_dataset")


def manager() -> JobManager:
    """The server's one manager (and worker threads) for this registry, shared by every browser session."""
    return job_manager()


def as_form(values: dict) -> dict:
    """Config values as the form holds them: target modules as the text the user types."""
    modules = values.get("target_modules")
    return {**values, "target_modules": ", ".join(modules) if isinstance(modules, list) else modules}


SAVED = "saved defaults (Settings)"


def with_preset(values: dict, preset: str) -> dict:
    """A preset sets every training setting over the saved defaults: what it leaves out goes back to them."""
    start = new_job_values(None if preset == SAVED else preset)
    return as_form({**start, **{name: values.get(name) for name in JOB_IDENTITY}})


def apply_preset() -> None:
    preset = st.session_state["job_preset"]
    load_form(FORM, f"preset:{preset}", with_preset(current_values(FORM), preset))


def load_config(config: JobConfig) -> None:
    """Clone: put a job's settings into the form for editing and resubmission."""
    load_form(
        FORM,
        f"clone:{config.adapter_name}",
        as_form({**config.model_dump(), "adapter_name": f"{config.adapter_name}_v2"}),
    )


def job_form(datasets: list[library.DatasetRecord]) -> None:
    values = form_values(FORM, lambda: with_preset({}, SAVED))
    st.selectbox(
        "Preset",
        [SAVED, *PRESETS],
        key="job_preset",
        on_change=apply_preset,
        help="Fills the settings below. A new job starts from the training defaults saved on Settings; a preset "
        "changes the settings it names.",
    )

    def widget(name: str, container=st, **options):
        return form_widget(FORM, name, partial(job_widget, name, container=container, **options))

    # The dataset the adapter type was last set for, per loaded record: a clone's or a preset's type stays with its
    # dataset; a new form's follows the first dataset it shows.
    follows = form_key(FORM, "type_follows")
    st.session_state.setdefault(follows, values.get("train_dataset"))
    left, right = st.columns(2)
    type_slot = left.container()  # drawn once the dataset is known, above it
    name_slot = right.container()  # drawn once the type is known: its example names both
    models = attempt(list_base_models, "retry_models") or []
    # the id and its size, short: in half the form at 1400 px "SmolLM2-135M-Instruct (embedded, 135M params)" was cut
    labels = {
        m.id: f"{m.id} · {parameter_count(m.parameters)}" if m.parameters else f"{m.id} ({m.source})" for m in models
    }
    widget("base_model", left, choices=list(labels), format_func=labels.get)
    objective = widget("objective", right)
    trainable = [d.name for d in datasets if fits_objective(d.kind, objective)]
    evaluable = ["", *[d.name for d in datasets if fits_objective(d.kind, objective, role="eval")]]
    dataset = widget("train_dataset", left, choices=trainable)
    record = next((d for d in datasets if d.name == dataset), None)
    if dataset != st.session_state[follows]:
        st.session_state[follows] = dataset
        if record is not None and record.purpose is not None:
            values["adapter_type"] = record.purpose
    # keyed by the dataset it follows as every widget is by its record: another dataset redraws it with its type
    adapter_type = form_widget(
        FORM, "adapter_type", partial(job_widget, "adapter_type", container=type_slot), follows=dataset
    )
    widget("adapter_name", name_slot, placeholder=adapter_name_for(dataset, adapter_type))
    widget("eval_dataset", right, choices=evaluable, format_func=lambda d: d or "none")
    widget("quantization", left)
    widget("epochs", right)
    # under both columns: in one of them it pushed that column's fields out of line with the other's
    adapter_type_mismatch(record, values["adapter_type"])
    # A row of its own: in half of the form (270 px in an 1100 px window) its label was cut.
    widget("evaluate_base_first")
    # Drawn only while open: Streamlit's number_input rebuilds the session's whole widget state on every call
    # (0.16 of a 0.34 s run with its 11 number fields drawn closed); closed, the form keeps their values.
    advanced_box = st.expander("Advanced settings", key=ADVANCED, on_change="rerun")
    advanced = [name for name in JOB_WIDGETS if name not in JOB_FORM_TOP]
    # a field of other objectives only (DPO beta for an SFT job) is not drawn, and keeps its value for when it is
    shown = [name for name in advanced if applies_to(name, objective)] if advanced_box.open else []
    keep_undrawn(FORM, [name for name in advanced if name not in shown])
    if shown:
        with advanced_box:
            switches = [name for name in shown if field_shape(JobConfig, name)[0] is bool]
            columns = st.columns(3)
            for index, name in enumerate(n for n in shown if n not in switches and n != "target_modules"):
                widget(name, columns[index % 3])
            # The on/off settings in a row of their own that wraps: in a third of the form (180 px at 1280 px)
            # their labels were cut ("Gradient checkpointing", "Compile (torch.compile)").
            switch_row = st.container(horizontal=True, gap="medium")
            for name in switches:
                widget(name, switch_row)
            widget("target_modules")
    job_plan(values, record)
    actions = st.container(horizontal=True, gap="medium")  # two columns cut "Start Training" in a 1100 px window
    if actions.button("Start Training", type="primary", key="start_training", icon=":material/rocket_launch:"):
        submit(dict(values))
    with actions.popover("Batch submit: one job per dataset", icon=":material/library_add:"):
        chosen = st.multiselect(
            "Datasets",
            trainable,
            key="batch_datasets",
            help="Each dataset gets its own job with the settings above; the adapter name gets "
            "the dataset name as a suffix, and the adapter type is what the dataset was made to train, if it says.",
        )
        if st.button("Queue batch", key="batch_submit", disabled=not chosen):
            by_name = {d.name: d for d in datasets}
            submit_batch(dict(values), [by_name[name] for name in chosen])


def job_plan(values: dict, record: library.DatasetRecord | None) -> None:
    """The steps and time the form's job plans, above Start Training: "3 epochs" alone said neither."""
    if record is None:
        return
    try:  # planned before the adapter is named too: a name changes no step
        config = build_config(**{**values, "adapter_name": values["adapter_name"] or "plan"})
    except ConsoleError:
        return  # the form's errors show on Start Training
    plan = plan_job(config, record.rows)
    text = (
        f"Plan: about {plan.steps:,} steps of {config.effective_batch_size} examples, {plan.examples:,} drawn from "
        f"{record.name}'s {record.rows:,}"
    )
    if plan.seconds is None:
        text += "; no completed job on this base model and dataset yet to time it by."
    else:
        text += f"; about {fmt_eta(plan.seconds)} at the pace of {plan.paced_by}, the last job on them."
    st.caption(plain(text))


def checking(jobs: str) -> str:
    """What a submit waits for: the preflight, and the first time in this server the training libraries too."""
    if training_stack_ready():
        return f"Checking {jobs}: base model, dataset and memory…"
    return (
        "Loading the training libraries (torch, transformers, PEFT, TRL) for this server's first job, then checking "
        f"{jobs}: seconds on an idle machine, a few minutes on a busy one…"
    )


def submit(values: dict) -> None:
    try:
        with st.spinner(checking("the job")):
            job = manager().submit(build_config(**values))
    except Exception as error:  # noqa: BLE001 — never a traceback on the page
        show_error(error, "retry_submit")
        return
    done(f"Queued {job.config.adapter_name} as {job.id}.", rerun="app")


def submit_batch(values: dict, datasets: list[library.DatasetRecord]) -> None:
    """All configs pass validation and preflight before any job is queued."""
    try:
        configs = [
            build_config(
                **{
                    **values,
                    "adapter_type": dataset.purpose or values["adapter_type"],
                    "train_dataset": dataset.name,
                    "adapter_name": f"{values['adapter_name'] or 'adapter'}_{dataset.name}"[:64],
                }
            )
            for dataset in datasets
        ]
        with st.spinner(checking(f"{len(configs)} jobs")):
            jobs = manager().submit_many(configs)
    except Exception as error:  # noqa: BLE001 — readable, never a traceback
        show_error(error, "retry_batch")
        return
    done(f"Queued {len(jobs)} jobs: {', '.join(j.config.adapter_name for j in jobs)}.", rerun="app")


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
    show_table(
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
        publishing = sum(j.kind != "train" and j.status not in FINISHED for j in manager().all_jobs(kind=None))
        st.caption(
            f"{counts[JobStatus.FAILED]} failed · {counts[JobStatus.CANCELLED]} cancelled · "
            f"{counts[JobStatus.INTERRUPTED]} interrupted · limit {manager().concurrency} at a time"
            + (f", shared with {publishing} publish job(s)" if publishing else "")
        )


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}h {minutes % 60}m" if minutes >= 60 else f"{minutes}m {secs:02d}s"


def act(action, message: str, key: str) -> None:
    """Run a job action; confirm it by name and redraw the jobs at once, or show why it was refused."""
    try:
        action()
    except Exception as error:  # noqa: BLE001 — never a traceback on the page
        show_error(error, key)
        return
    done(message, rerun="fragment")


def job_card(job: JobState) -> None:
    progress = manager().progress(job.id)
    with st.container(border=True, key=f"job_card_{job.id}"):  # the key names the card's element (st-key-...)
        head, action = st.columns([5, 1])
        head.markdown(
            f"**{plain(job.config.adapter_name)}** {STATUS_BADGES[job.status]}  \n"
            f"`{job.id}` · {job.config.objective.upper()} · {plain(job.config.train_dataset)}"
        )
        checkpoint = resume_point(job)
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            if may(manager().cancel) and action.button("Cancel", key=f"cancel_{job.id}", icon=":material/cancel:"):
                act(
                    lambda: manager().cancel(job.id),
                    f"Cancel requested for {job.config.adapter_name} ({job.id}).",
                    f"retry_cancel_{job.id}",
                )
        elif checkpoint is not None and may(manager().resume):
            resume_button(job, action, f"resume_card_{job.id}")
        if job.status == JobStatus.COMPLETED:
            st.progress(1.0, text="Completed")
        else:
            st.progress(progress.fraction, text=f"{progress.fraction:.0%}")
        epoch = f"{progress.epoch:.2f}" if progress.epoch is not None else "—"
        loss = f"{progress.loss:.3f}" if progress.loss is not None else "—"
        running = job.status == JobStatus.RUNNING
        # labelled like every other figure: before the first logged step a bare "—" named nothing
        if progress.tokens_per_second:
            speed = f"{progress.tokens_per_second:,.0f} tok/s"
        else:
            speed = "measuring…" if running else "—"
        if progress.efficiency is not None and running:
            speed += f" ({progress.flops_per_second / 1e9:,.1f} GFLOP/s, {progress.efficiency:.0%} of matmul peak)"
        lr = f"{progress.learning_rate:.2e}" if progress.learning_rate is not None else "—"
        eta = f" | ETA {fmt_eta(progress.eta_seconds)}" if running else ""
        st.caption(
            f"Step {progress.step}/{progress.max_steps or '—'} | Epoch {epoch} | Loss {loss} | LR {lr} | "
            f"Speed {speed}{eta}"
        )
        if job.status == JobStatus.INTERRUPTED:
            st.caption(
                ":material/info: The server stopped while this job trained. "
                + (
                    f"Resume continues from its checkpoint at step {checkpoint}."
                    if checkpoint is not None
                    else "It saved no checkpoint: Restart it from Job details below."
                )
            )
        if job.error:
            show_error(job.error)


def resume_point(job: JobState) -> int | None:
    """The step a resume would continue from: the job's latest checkpoint, if it may be resumed at all."""
    if job.status not in RESUMABLE:
        return None
    checkpoint = manager().latest_checkpoint(job.id)
    return int(checkpoint.name.removeprefix("checkpoint-")) if checkpoint else None


def resume_button(job: JobState, where, key: str) -> None:
    """Resume, on the job's card (where an interrupted job is seen first) and in Job details."""
    if where.button("Resume", key=key, icon=":material/play_arrow:", help="Continue from the last checkpoint"):
        act(
            lambda: manager().resume(job.id),
            f"{job.config.adapter_name} queued to resume from its last checkpoint.",
            f"retry_{key}",
        )


def loss_chart(rows: list[dict]) -> None:
    frame = pd.DataFrame(rows)
    figure = go.Figure()
    if "loss" in frame:
        train = frame.dropna(subset=["loss"])
        figure.add_traces(smoothed_traces(train["step"], train["loss"], "train loss", "#3b82f6"))
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


def job_detail(job: JobState) -> None:
    """The job's actions first, then what grows as it trains (loss chart, final metrics, log): the panel redraws
    every 2 s, and buttons below a chart that appears would jump down under the pointer as a click lands.

    The loss chart is drawn when the user turns it on, and the log is plain text: Plotly's code (4.7 MB of JavaScript)
    and st.code's highlighter (1.6 MB) load when an element first needs them, and on a first visit while a job
    trained they held the page's first render 1.4-2.2 s after its script had run (Training Metrics draws the curves)."""
    job_id = job.id
    st.markdown(f"**{plain(job.config.adapter_name)}** {STATUS_BADGES[job.status]} · `{job.id}`")
    log = manager().log_text(job_id)
    actions = st.columns(4)
    writer = may(manager().resume, manager().restart, manager().submit)
    if writer and resume_point(job) is not None:
        resume_button(job, actions[0], f"resume_{job_id}")
    if (
        writer
        and job.status in FINISHED
        and actions[1].button(
            "Restart", key=f"restart_{job_id}", icon=":material/restart_alt:", help="A new job, same config"
        )
    ):
        act(lambda: manager().restart(job_id), f"Restarted {job.config.adapter_name} as a new job.", "retry_restart")
    if writer and actions[2].button(
        "Clone config",
        key=f"clone_{job_id}",
        icon=":material/content_copy:",
        help="Load these settings into the form above",
    ):
        load_config(job.config)
        done(
            f"The form now holds {job.config.adapter_name}'s settings, named {job.config.adapter_name}_v2.", rerun="app"
        )
    actions[3].download_button(
        "Export log",
        data=log,
        file_name=f"{job_id}.log",
        key=f"log_export_{job_id}",
        on_click="ignore",
        icon=":material/download:",
    )
    rows = manager().metrics(job_id)
    if not rows:
        st.caption("No metrics yet: they appear after the first logged step.")
    elif st.toggle("Loss curve", key=LOSS_CURVE, help="The job's training and eval loss over its steps."):
        loss_chart(rows)
    if job.final_metrics:
        st.markdown("Final metrics")
        values_table(job.final_metrics, "Metric")
    needle = st.text_input("Search the log", key=f"log_search_{job_id}")
    lines = [line for line in log.splitlines() if needle.casefold() in line.casefold()] if needle else log.splitlines()
    st.html(LOG_STYLE)
    with st.container(key=f"job_log_{job_id}"):
        st.text("\n".join(lines[-200:]) or "(empty)")


@fragment(run_every=2)  # its Cancel, Resume, Restart buttons write: every rerun acts as the signed-in user
def jobs_panel() -> None:
    """The cards, the history and the details in one fragment, so they always show the same moment of every job."""
    show_flash()
    jobs = attempt(manager().all_jobs, "retry_jobs")
    if jobs is None:
        return
    # a fixed number of cards, active ones first: a job that finishes changes a card, never the panel's height
    active = [j for j in jobs if j.status in (JobStatus.RUNNING, JobStatus.QUEUED)]
    recent = [j for j in jobs if j.status in FINISHED][: max(0, CARDS - len(active))]
    st.subheader("Active & recent jobs")
    if not jobs:
        st.info("No training jobs yet. Fill in the form and press **Start Training**.")
        return
    for job in [*active, *recent]:
        job_card(job)
    st.subheader("Training history")
    history(jobs)
    st.subheader("Job details")
    by_id = {j.id: j for j in jobs}
    job_id = st.selectbox(
        "Job",
        list(by_id),
        key="job_selected",
        # names the job, never its status: a picked option whose label changed is no longer an option, and
        # Streamlit then jumps to the first job (the card below shows the status)
        format_func=lambda i: f"{by_id[i].config.adapter_name} · {i}",
    )
    job_detail(by_id[job_id])


page_title("LoRA Training Management")
st.caption(
    "Train LoRA / QLoRA adapters with PEFT and TRL, each job in a process of its own beside the console. Jobs keep "
    "their state on disk: after a "
    "restart, queued jobs run and a job that was training resumes from its last checkpoint when you press Resume."
)
show_broken(attempt(lambda: broken_files("jobs"), "retry_broken") or [])
form_col, queue_col = st.columns([3, 1])
with queue_col:
    queue_summary()
with form_col:
    st.subheader("Create training job")
    datasets = attempt(library.list_datasets, "retry_datasets")
    if not may(manager().submit):
        st.info("Your role can follow jobs but not start them; ask an admin for the practitioner role.")
    elif datasets:
        job_form(datasets)
    elif datasets is not None:
        st.info("There is no dataset to train on yet: upload one in the Dataset Library, or load the demo data.")
        load_demo_button("jobs_load_demo")
jobs_panel()
if may(manager().submit):
    # Drawn: once the user stays, the training stack imports in the background, so Start Training finds it loaded.
    # Only the pages that submit jobs start it: while it imports, other pages of this server render more slowly.
    warm_training_stack_on_a_stay()
