"""Train Model (seeds 003 / 004): the six-step wizard. Every widget takes its bounds, choices and help from JobConfig,
and every error shown is JobConfig's own (or the submission checks'), so no rule is written twice."""

from typing import Any

import streamlit as st

from services import datasets as library
from services.settings import adapter_name_for, new_job_values
from services.training import (
    FINISHED,
    PRESETS,
    Experiment,
    JobConfig,
    check_job,
    field_errors,
    fits_objective,
    get_job_status,
    job_manager,
    list_base_models,
    submit_config,
)
from views.common import (
    adapter_type_mismatch,
    attempt,
    field_shape,
    human_size,
    job_widget,
    load_demo_button,
    model_widget,
    page_title,
    parameter_count,
    plain,
    show_error,
    warm_training_stack_on_a_stay,
)
from views.session import may

STEPS = (
    ("Experiment", ":material/science:", ("experiment", "adapter_name", "adapter_type")),
    ("Base model", ":material/memory:", ("base_model", "quantization")),
    ("Training data", ":material/dataset:", ("train_dataset", "objective")),
    ("Evaluation data", ":material/fact_check:", ("eval_dataset", "evaluate_base_first")),
    (
        "Configuration",
        ":material/tune:",
        ("epochs", "max_steps", "learning_rate", "batch_size", "lora_r", "lora_alpha", "max_seq_length", "seed"),
    ),
    ("Review & launch", ":material/rocket_launch:", ()),
)
FIELDS = JobConfig.model_fields
DATA = "wizard_values"

page_title("Train Model")
st.caption("Six steps from an experiment idea to a running job. The one-page form on Training Jobs does the same.")


def values() -> dict[str, Any]:
    """The wizard's answers, kept apart from widget state (Streamlit drops a widget's state when it is not shown)."""
    if DATA not in st.session_state:
        start = new_job_values()
        start.update(
            adapter_name="", train_dataset=None, experiment_name="", experiment_description="", experiment_goal=""
        )
        st.session_state[DATA] = start
    return st.session_state[DATA]


def candidate() -> dict[str, Any]:
    """The answers as JobConfig input: the experiment fields nested, empty optional answers left out."""
    data = dict(values())
    experiment = {key: data.pop(f"experiment_{key}") for key in ("name", "description", "goal")}
    data["experiment"] = experiment if any(experiment.values()) else None
    return {k: v for k, v in data.items() if v is not None or k in ("experiment", "eval_dataset", "base_model")}


def choices(name: str) -> list[str]:
    """The values of a Literal field, from JobConfig's annotation."""
    return list(field_shape(JobConfig, name)[1])


def widget(name: str, render) -> None:
    """Render one widget bound to the wizard's answers: state in, value back."""
    key = f"wizard_w_{name}"
    if key not in st.session_state:
        st.session_state[key] = values().get(name)
    render(key)
    values()[name] = st.session_state[key]


def dataset_choice(name: str, label: str, datasets: list, *, role: str, placeholder: str) -> None:
    """The training or evaluation dataset: only those that fit the chosen objective in that role, one dropped when
    the objective changed under it."""
    objective = values().get("objective") or "sft"
    kinds = {d.name: d for d in datasets if fits_objective(d.kind, objective, role=role)}
    if st.session_state.get(f"wizard_w_{name}", values().get(name)) not in (None, *kinds):
        values()[name] = None  # chosen for the other objective
        st.session_state.pop(f"wizard_w_{name}", None)
    widget(
        name,
        lambda k: st.selectbox(
            label,
            list(kinds),
            key=k,
            index=None,
            placeholder=placeholder,
            help=FIELDS[name].description,
            format_func=lambda n: f"{n} · {kinds[n].kind.value} · {kinds[n].rows:,} rows",
        ),
    )


FOLLOWS = "wizard_type_follows"  # the training dataset the adapter type was last set for


def follow_dataset(datasets: list) -> None:
    """A newly chosen training dataset that says what it trains sets the adapter type (chosen on the first step), and
    says so; a type the user then sets against it is shown beside the type."""
    name = values().get("train_dataset")
    record = next((d for d in datasets if d.name == name), None)
    if name != st.session_state.get(FOLLOWS):
        st.session_state[FOLLOWS] = name
        if record is not None and record.purpose is not None:
            values()["adapter_type"] = record.purpose
            st.session_state.pop("wizard_w_adapter_type", None)
    if record is not None and record.purpose is not None and record.purpose == values().get("adapter_type"):
        st.caption(f":material/sync: Adapter type {record.purpose}: what {plain(name)} was made to train.")
    adapter_type_mismatch(record, values().get("adapter_type"))


def chosen_dataset() -> library.DatasetRecord | None:
    """The training dataset's record once one is chosen (a step that does not list the datasets)."""
    name = values().get("train_dataset")
    if name is None:
        return None
    return next((d for d in attempt(library.list_datasets, "retry_wizard_chosen") or [] if d.name == name), None)


def errors_for(step: int) -> dict[str, str]:
    """JobConfig's errors about this step's fields; whole-config rules belong to the eval or configuration step."""
    found = field_errors(candidate())
    mine = {name: message for name, message in found.items() if name in STEPS[step][2]}
    if "" in found and step == (3 if "eval dataset" in found[""] else 4):
        mine[""] = found[""]
    return mine


def inline_error(name: str, shown: dict[str, str]) -> None:
    if name in shown:
        st.error(plain(shown[name]), icon=":material/error:")


step = st.session_state.setdefault("wizard_step", 0)
st.progress((step + 1) / len(STEPS), text=f"Step {step + 1} of {len(STEPS)}: {STEPS[step][0]}")
header = st.columns(len(STEPS))
for index, (title, icon, _) in enumerate(STEPS):
    header[index].markdown(f"{icon} **{title}**" if index == step else f"{icon} {title}")
shown = st.session_state.get("wizard_shown_errors", {}) if st.session_state.get("wizard_error_step") == step else {}

with st.container(border=True):
    if step == 0:
        widget("experiment_name", lambda k: model_widget(Experiment, "name", "Experiment name", key=k))
        widget(
            "experiment_description",
            lambda k: model_widget(Experiment, "description", "Description", key=k, widget="area", height=80),
        )
        widget("experiment_goal", lambda k: model_widget(Experiment, "goal", "Goal", key=k))
        inline_error("experiment", shown)
        left, right = st.columns(2)
        with right:  # first: the name's example follows the type
            widget("adapter_type", lambda k: job_widget("adapter_type", key=k))
            adapter_type_mismatch(chosen_dataset(), values().get("adapter_type"))
        with left:
            example = adapter_name_for(values().get("train_dataset"), values()["adapter_type"])
            widget("adapter_name", lambda k: job_widget("adapter_name", key=k, placeholder=example))
            inline_error("adapter_name", shown)
    elif step == 1:
        models = attempt(list_base_models, "retry_wizard_models") or []
        ready = {m.id: m for m in models if m.ready}
        if not ready:
            st.warning(
                "No base model is ready. Register one on Models, or run `make model`.", icon=":material/warning:"
            )
        options = list(ready)
        if values().get("base_model") not in options:
            values()["base_model"] = options[0] if options else None
            st.session_state.pop("wizard_w_base_model", None)
        widget(
            "base_model",
            lambda k: st.selectbox(
                "Base model",
                options,
                key=k,
                help=FIELDS["base_model"].description,
                format_func=lambda m: (
                    f"{m} · {ready[m].architecture} · {parameter_count(ready[m].parameters)} · "
                    f"{human_size(ready[m].size_bytes)}"
                ),
            ),
        )
        inline_error("base_model", shown)
        widget(
            "quantization",
            lambda k: st.segmented_control(
                "Quantization", choices("quantization"), key=k, help=FIELDS["quantization"].description
            ),
        )
        inline_error("quantization", shown)
    elif step == 2:
        datasets = attempt(library.list_datasets, "retry_wizard_datasets") or []
        if not datasets:
            st.info("The library has no datasets yet. Upload one on Dataset Library, or load the demo data.")
            load_demo_button("wizard_load_demo")
        widget(
            "objective",
            lambda k: st.segmented_control(
                "Objective", choices("objective"), key=k, help=FIELDS["objective"].description
            ),
        )
        inline_error("objective", shown)
        dataset_choice("train_dataset", "Training dataset", datasets, role="training", placeholder="choose a dataset")
        follow_dataset(datasets)
        inline_error("train_dataset", shown)
        inline_error("", shown)
    elif step == 3:
        datasets = attempt(library.list_datasets, "retry_wizard_eval") or []
        dataset_choice("eval_dataset", "Evaluation dataset (optional)", datasets, role="eval", placeholder="none")
        inline_error("eval_dataset", shown)
        widget("evaluate_base_first", lambda k: job_widget("evaluate_base_first", key=k))
        inline_error("evaluate_base_first", shown)
        inline_error("", shown)
    elif step == 4:
        preset = st.selectbox("Start from a preset", ["(keep current)", *PRESETS], key="wizard_preset")
        if preset != "(keep current)" and st.button("Apply preset", icon=":material/auto_fix_high:"):
            for name, value in PRESETS[preset].items():
                values()[name] = value
                st.session_state.pop(f"wizard_w_{name}", None)
            st.rerun()
        left, right = st.columns(2)
        for index, name in enumerate(STEPS[4][2]):
            column = left if index % 2 == 0 else right
            with column:
                widget(name, lambda k, name=name: job_widget(name, key=k))
                inline_error(name, shown)
        inline_error("", shown)
    else:
        config = None
        try:
            with st.spinner("Checking the configuration against the model, the data and this machine…"):
                config = check_job(candidate())
        except Exception as error:  # noqa: BLE001 — the reason is shown; Launch stays disabled
            show_error(error)
        if config is not None:
            st.success(
                "The configuration is valid and fits the model, data and hardware.", icon=":material/check_circle:"
            )
        adapter_type_mismatch(chosen_dataset(), values().get("adapter_type"))
        summary = {k: v for k, v in candidate().items() if v not in (None, "")}
        st.json(summary, expanded=True)
        launched_job = st.session_state.get("wizard_job")
        writer = may(job_manager().submit, why="Launching a job")
        if st.button(
            "Launch",
            type="primary",
            disabled=config is None or launched_job is not None or not writer,
            icon=":material/rocket_launch:",
            key="wizard_launch",
            help="Launched; start over to train another." if launched_job else None,
        ):
            try:
                st.session_state["wizard_job"] = submit_config(config)
            except Exception as error:  # noqa: BLE001
                show_error(error)
            else:
                st.rerun()
        if launched_job and st.button("Start over", icon=":material/restart_alt:", key="wizard_restart"):
            for key in [k for k in st.session_state if str(k).startswith(("wizard_w_", "wizard_values"))]:
                del st.session_state[key]
            for key in ("wizard_step", "wizard_job", "wizard_shown_errors", "wizard_error_step", FOLLOWS):
                st.session_state.pop(key, None)
            st.rerun()


def go_back() -> None:
    st.session_state["wizard_step"] -= 1
    st.session_state.pop("wizard_error_step", None)


def go_next() -> None:
    """Move on only when JobConfig accepts this step's answers; otherwise keep its errors for the fields."""
    for key in [k for k in st.session_state if str(k).startswith("wizard_w_")]:  # callbacks run before the widgets
        values()[str(key).removeprefix("wizard_w_")] = st.session_state[key]
    current = st.session_state["wizard_step"]
    problems = errors_for(current)
    if problems:
        st.session_state["wizard_shown_errors"], st.session_state["wizard_error_step"] = problems, current
    else:
        st.session_state["wizard_step"] = current + 1
        st.session_state.pop("wizard_error_step", None)


nav = st.columns([1, 1, 6])
nav[0].button("Back", disabled=step == 0, icon=":material/arrow_back:", key="wizard_back", on_click=go_back)
if step < len(STEPS) - 1:
    nav[1].button("Next", type="primary", icon=":material/arrow_forward:", key="wizard_next", on_click=go_next)

if job_id := st.session_state.get("wizard_job"):

    @st.fragment(run_every=2)
    def launched() -> None:
        status = attempt(lambda: get_job_status(job_id), "retry_wizard_status")
        if status is None:
            return
        with st.container(border=True):
            st.markdown(f"**Job `{job_id}`**: {status['status']}")
            st.progress(status["progress"], text=f"step {status['step']} of {status['max_steps'] or '?'}")
            if status["error"]:
                st.error(plain(status["error"]), icon=":material/error:")
            st.page_link("views/training_jobs.py", label="Follow it on Training Jobs", icon=":material/monitoring:")
            if status["status"] in {s.value for s in FINISHED}:
                st.page_link("views/publish.py", label="Publish the adapter", icon=":material/package_2:")

    launched()

if may(job_manager().submit):
    warm_training_stack_on_a_stay()  # drawn: the stack imports while the user walks the steps (see Training Jobs)
