"""Training Jobs and Adapters pages with AppTest: a job submitted from the form trains a tiny model to completion."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from services import upload_dataset
from services.training import job_manager
from tests.tiny_model import build_tiny_model
from training.jobs import JobStatus

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def console_with_tiny_model(registry, tmp_path, monkeypatch):
    models = tmp_path / "models"
    monkeypatch.setenv("RMN_LORA_MODELS", str(models))
    build_tiny_model(models / "tiny-llama")
    rows = [
        {"instruction": f"Map field 'adType' with value 'v{i}' from Amazon to RMIS.", "output": f"placement_type: p{i}"}
        for i in range(12)
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upload_dataset("mapping_sft", tmp_path / "m.jsonl")
    return registry


def training_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "views" / "training_jobs.py"), default_timeout=120)


def unescaped(markdown: str) -> str:
    """An error's text as the user reads it (pages escape Markdown syntax in it)."""
    return markdown.replace("\\", "")


def field(at: AppTest, kind: str, name: str):
    """The job form's widget for config field `name` (its key names the record the form edits, then the field)."""
    (widget,) = [w for w in getattr(at, kind) if str(w.key).startswith("job[") and w.key.endswith(f"].{name}")]
    return widget


def set_advanced(at: AppTest, open_: bool) -> AppTest:
    """Open or close Advanced settings as a user's click does (its fields are drawn only while it is open)."""
    at.session_state["job_advanced"] = open_
    return at


def test_form_refuses_impossible_values_and_queues_nothing(console_with_tiny_model):
    at = training_page().run()
    assert not at.exception
    field(at, "selectbox", "base_model").select("tiny-llama")
    field(at, "text_input", "adapter_name").set_value("../escape").run()
    at.button(key="start_training").click().run()
    assert at.error and "adapter name" in unescaped(at.error[0].value).lower()
    field(at, "text_input", "adapter_name").set_value("ok_name")
    set_advanced(at, True).run()
    field(at, "number_input", "lora_r").set_value(1)
    field(at, "text_input", "target_modules").set_value("no_such_proj").run()
    at.button(key="start_training").click().run()
    assert at.error and "no_such_proj" in unescaped(at.error[0].value)
    assert job_manager().all_jobs() == []


def test_job_from_the_form_completes_and_its_adapter_is_listed(console_with_tiny_model):
    at = training_page().run()
    assert field(at, "selectbox", "base_model").value == "SmolLM2-135M-Instruct"
    field(at, "selectbox", "base_model").select("tiny-llama")
    field(at, "text_input", "adapter_name").set_value("amazon_form")
    set_advanced(at, True).run()
    field(at, "number_input", "max_steps").set_value(4)
    field(at, "number_input", "max_seq_length").set_value(64).run()
    set_advanced(at, False).run()  # closed again: its fields are not drawn, the form keeps what was typed
    assert not [w for w in at.number_input if w.key.endswith(("].max_steps", "].max_seq_length"))]
    at.button(key="start_training").click().run()
    assert not at.exception and any("Queued amazon_form" in unescaped(t.value) for t in at.toast), [
        e.value for e in at.error
    ]
    job = job_manager().all_jobs()[0]
    assert (job.config.max_steps, job.config.max_seq_length) == (4, 64)
    finished = job_manager().wait(job.id, timeout=300)
    assert finished.status == JobStatus.COMPLETED, finished.error
    at.run()
    assert any("COMPLETED" in m.value for m in at.markdown)
    # Job details: the log as plain text and the loss chart on request, so a first visit loads neither Plotly's code
    # nor a highlighter's (seconds of the page's first render while a job trained).
    assert not at.code and not at.get("plotly_chart")
    assert any("completed: adapter amazon_form v1 saved" in t.value for t in at.text), [t.value for t in at.text]
    at.toggle(key="job_loss_curve").set_value(True).run()
    (chart,) = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert chart["layout"]["title"]["text"] == "Loss curve" and chart["data"][0]["y"]
    adapters = AppTest.from_file(str(ROOT / "views" / "adapters.py"), default_timeout=120).run()
    assert not adapters.exception
    assert list(adapters.dataframe[0].value["Adapter"]) == ["amazon_form v1"]  # name and version, one column
    commands = [code.value for code in adapters.code]
    assert any(c.startswith("vllm serve tiny-llama --enable-lora --lora-modules amazon_form-v1=") for c in commands)
    assert any(c.startswith("python convert_lora_to_gguf.py ") for c in commands)


def test_a_preset_sets_every_training_setting_and_keeps_what_the_job_is_about(console_with_tiny_model):
    at = set_advanced(training_page(), True).run()
    field(at, "text_input", "adapter_name").set_value("amazon_fast")
    at.selectbox(key="job_preset").select("dpo preferences").run()
    assert field(at, "selectbox", "objective").value == "dpo"
    at.selectbox(key="job_preset").select("retailer mapping (fast)").run()
    assert not at.exception
    assert field(at, "selectbox", "objective").value == "sft"  # left out by this preset: back to the default
    assert field(at, "number_input", "loraplus_lr_ratio").value == 12
    assert field(at, "text_input", "adapter_name").value == "amazon_fast"
    at.selectbox(key="job_preset").select("balanced").run()
    assert field(at, "number_input", "loraplus_lr_ratio").value is None
    assert field(at, "number_input", "learning_rate").value == pytest.approx(2e-4)


def test_issue_10_every_form_widget_accepts_exactly_what_jobconfig_accepts(console_with_tiny_model):
    """Bounds and choices come from JobConfig's fields: every number widget's min and max are valid settings and the
    next value beyond either is refused; every choice list is the field's Literal (7 fields used to disagree)."""
    import math
    import typing

    from pydantic import ValidationError

    from services.training import JobConfig

    at = set_advanced(training_page(), True).run()
    base = {"adapter_name": "bounds", "train_dataset": "mapping_sft", "max_steps": 10}
    numbers = [w for w in at.number_input if str(w.key).startswith("job[")]
    assert len(numbers) == 13  # an SFT job's: DPO beta is drawn for DPO and KTO jobs only
    field(at, "selectbox", "objective").select("dpo").run()
    numbers.append(field(at, "number_input", "dpo_beta"))
    for widget in numbers:
        name = widget.key.rsplit(".", 1)[1]
        integer = int in typing.get_args(JobConfig.model_fields[name].annotation) or (
            JobConfig.model_fields[name].annotation is int
        )
        assert widget.min is not None and widget.max is not None, f"{name} is unbounded in the form"
        low, high = (int(widget.min), int(widget.max)) if integer else (widget.min, widget.max)
        below, above = (
            (low - 1, high + 1) if integer else (math.nextafter(low, -math.inf), math.nextafter(high, math.inf))
        )
        for accepted in (low, high):
            JobConfig.model_validate({**base, name: accepted})
        for refused in (below, above):
            with pytest.raises(ValidationError):
                JobConfig.model_validate({**base, name: refused})
    for name in ("adapter_type", "objective", "quantization", "scheduler", "precision"):
        choices = typing.get_args(JobConfig.model_fields[name].annotation)
        options = field(at, "selectbox", name).options
        assert len(options) == len(choices), name
        if name in ("adapter_type", "scheduler", "precision"):
            assert options == list(choices), name


def test_evaluate_the_base_model_first_from_the_form(console_with_tiny_model, tmp_path, monkeypatch):
    """The form's option queues the base model's evaluation with the job, linked to it; without an evaluation
    dataset the option is refused with JobConfig's reason and nothing is queued."""
    from services.evaluation import list_evaluations, wait_for_evaluation

    monkeypatch.setenv("RMN_LORA_AUTO_EVALUATE", "0")  # this test is about the run queued with the job

    held_out = [
        {"prompt": f"Map field 'adType' with value 'w{i}' from Amazon to RMIS.", "reference": f"p{i}"} for i in range(4)
    ]
    (tmp_path / "e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    upload_dataset("mapping_eval", tmp_path / "e.jsonl")
    at = training_page().run()
    field(at, "selectbox", "base_model").select("tiny-llama")
    field(at, "text_input", "adapter_name").set_value("first_form")
    set_advanced(at, True).run()
    field(at, "number_input", "max_steps").set_value(2)
    field(at, "toggle", "evaluate_base_first").set_value(True).run()
    at.button(key="start_training").click().run()
    assert at.error and "needs an eval dataset" in unescaped(at.error[0].value)
    assert job_manager().all_jobs() == [] and list_evaluations() == []
    field(at, "selectbox", "eval_dataset").select("mapping_eval").run()
    at.button(key="start_training").click().run()
    assert not at.exception and any("Queued first_form" in unescaped(t.value) for t in at.toast)
    (job,) = job_manager().all_jobs()
    (run,) = list_evaluations()
    assert (run.config.job_id, run.config.role, run.config.target.ref, run.total) == (job.id, "base", "tiny-llama", 4)
    assert job_manager().wait(job.id, timeout=300).status == JobStatus.COMPLETED
    assert wait_for_evaluation(run.id, timeout=300).status == "completed"


def test_advanced_settings_are_drawn_only_while_open_and_the_form_keeps_their_values(console_with_tiny_model):
    """Closed (as the page opens), Advanced settings draws none of its fields: each number field costs Streamlit a
    copy of the session's widget state per run. Their values stay in the form: a value typed in the run that
    closes it is kept, and opening it again shows them."""
    at = training_page().run()
    assert not at.exception
    drawn = {w.key.rsplit(".", 1)[1] for kind in ("number_input", "selectbox", "toggle", "text_input")
             for w in getattr(at, kind) if str(w.key).startswith("job[")}  # fmt: skip
    assert drawn == {"adapter_type", "adapter_name", "base_model", "objective", "train_dataset", "eval_dataset",
                     "quantization", "epochs", "evaluate_base_first"}  # fmt: skip
    saved = dict(at.session_state["job.values"])
    assert saved["learning_rate"] > 0 and saved["max_seq_length"] > 16  # item 4: never a minimum it never had
    set_advanced(at, True).run()
    assert field(at, "number_input", "learning_rate").value == pytest.approx(saved["learning_rate"])
    field(at, "number_input", "max_steps").set_value(7).run()
    field(at, "number_input", "seed").set_value(11)
    set_advanced(at, False).run()  # the seed typed, then Advanced settings closed before any other run
    assert not [w for w in at.number_input if w.key.endswith("].seed")]
    assert (at.session_state["job.values"]["max_steps"], at.session_state["job.values"]["seed"]) == (7, 11)
    set_advanced(at, True).run()
    assert (field(at, "number_input", "max_steps").value, field(at, "number_input", "seed").value) == (7, 11)


def test_walk_a_job_card_with_no_speed_yet_names_the_figure(console_with_tiny_model):
    """A card before the job's first logged step read "Step 0/— | Epoch — | Loss — | LR — | — ": every figure had its
    name but the speed (the closing walk of issue 11)."""
    from services.training import submit_training_job

    manager = job_manager()
    limit = manager.concurrency
    manager.set_concurrency(0)  # queued, never run: no speed yet
    try:
        submit_training_job("retailer", "waiting", "mapping_sft", base_model="tiny-llama", config={"max_steps": 2})
        at = training_page().run()
        assert not at.exception
        (figures,) = [c.value for c in at.caption if c.value.startswith("Step ")]
        assert figures.split(" | ")[1:] == ["Epoch —", "Loss —", "LR —", "Speed —"]
    finally:
        for job in manager.all_jobs():
            manager.cancel(job.id)
        manager.set_concurrency(limit)


def test_walk_training_metrics_names_each_chosen_jobs_line_beside_a_cancelled_one(console_with_tiny_model):
    """Training Metrics chose a completed job and a cancelled one with no metrics and drew one line without a legend
    (Plotly shows a legend from two lines): the chart did not say whose line it was (the closing walk of issue 11).
    Every chart names its jobs, and the page says which chosen job logged no step."""
    from services.training import submit_training_job

    manager = job_manager()
    trained = submit_training_job(
        "retailer", "trained", "mapping_sft", base_model="tiny-llama", config={"max_steps": 2, "max_seq_length": 64}
    )
    assert manager.wait(trained, timeout=300).status == JobStatus.COMPLETED
    limit = manager.concurrency
    manager.set_concurrency(0)
    try:
        waiting = submit_training_job("retailer", "stopped", "mapping_sft", base_model="tiny-llama")
        manager.cancel(waiting)
    finally:
        manager.set_concurrency(limit)
    at = AppTest.from_file(str(ROOT / "views" / "training_metrics.py"), default_timeout=120).run()
    assert not at.exception
    assert set(at.multiselect(key="metrics_jobs").value) == {trained, waiting}
    charts = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert charts
    for chart in charts:
        assert {trace["name"] for trace in chart["data"]} == {f"trained · {trained[-6:]}"}
        assert chart["layout"]["showlegend"] is True, chart["layout"].get("title")
    # The training loss is drawn raw (faint, no legend entry of its own) under its smoothing (TensorBoard's debiased
    # EMA: a batch's loss depends on which field it holds, so the raw line zigzags; the walk read that as instability).
    (loss,) = [c for c in charts if c["layout"]["title"]["text"] == "Training loss"]
    raw, smooth = loss["data"]
    assert raw["showlegend"] is False and raw["opacity"] < 1 and smooth["legendgroup"] == raw["legendgroup"]
    (first, second), smoothed = plotted(raw["y"]), plotted(smooth["y"])
    assert smoothed == pytest.approx([first, (0.8 * 0.2 * first + 0.2 * second) / (0.8 * 0.2 + 0.2)])
    assert any(f"stopped · {waiting[-6:]}" in unescaped(c.value) for c in at.caption), [c.value for c in at.caption]


def plotted(values) -> list[float]:
    """A trace's values as the chart's JSON holds them: a list, or Plotly's base64 typed array for a column."""
    import base64

    import numpy as np

    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def test_walk_the_adapter_name_placeholder_follows_the_dataset_and_adapter_type(console_with_tiny_model):
    """The name box read "amazon_schema_v1" beside a planning or a policy dataset (the closing walk of issue 11): its
    example is now named after the chosen training dataset and adapter type, on both job forms, from the one rule
    that names a new job's adapter (services.settings, where the forms' defaults come from)."""
    from registry.generators import generate_policy_dataset
    from registry.raw_sources import generate_raw_sources
    from services.settings import adapter_name_for

    generate_raw_sources(console_with_tiny_model)
    generate_policy_dataset(console_with_tiny_model)  # says it trains a policy adapter
    at = training_page().run()
    assert field(at, "selectbox", "train_dataset").value == "mapping_sft"  # an upload: the type stays retailer
    assert field(at, "text_input", "adapter_name").placeholder == adapter_name_for("mapping_sft", "retailer")
    field(at, "selectbox", "objective").select("dpo").run()
    assert field(at, "selectbox", "train_dataset").value == "policy_creative_dpo"
    assert field(at, "selectbox", "adapter_type").value == "policy"
    assert field(at, "text_input", "adapter_name").placeholder == adapter_name_for("policy_creative_dpo", "policy")
    field(at, "text_input", "adapter_name").set_value("typed")
    field(at, "selectbox", "adapter_type").select("domain").run()
    assert field(at, "text_input", "adapter_name").placeholder == adapter_name_for("policy_creative_dpo", "domain")
    assert field(at, "text_input", "adapter_name").value == "typed"  # a new example keeps what was typed
    assert not at.exception

    wizard = AppTest.from_file(str(ROOT / "views" / "train_wizard.py"), default_timeout=120).run()
    assert wizard.text_input(key="wizard_w_adapter_name").placeholder == adapter_name_for(None, "retailer")
    wizard.session_state["wizard_values"] |= {"train_dataset": "policy_creative_dpo", "adapter_type": "policy"}
    wizard.session_state["wizard_w_adapter_type"] = "policy"
    wizard.text_input(key="wizard_w_adapter_name").set_value("typed").run()
    assert wizard.text_input(key="wizard_w_adapter_name").placeholder == adapter_name_for(
        "policy_creative_dpo", "policy"
    )
    wizard.selectbox(key="wizard_w_adapter_type").select("task").run()
    assert wizard.text_input(key="wizard_w_adapter_name").placeholder == "task_policy_creative"
    assert wizard.text_input(key="wizard_w_adapter_name").value == "typed"
    assert not wizard.exception


def test_a_new_adapter_is_named_after_its_dataset_and_type():
    from services.settings import adapter_name_for

    assert adapter_name_for("task_planning_sft", "task") == "task_planning"
    assert adapter_name_for("retailer_amazon_sft", "retailer") == "retailer_amazon"
    assert adapter_name_for("policy_creative_dpo", "policy") == "policy_creative"
    assert adapter_name_for("mapping_sft", "retailer") == "retailer_mapping"
    assert adapter_name_for("task_planning_sft", "domain") == "domain_task_planning"
    assert adapter_name_for(None, "task") == "task_adapter"
    assert len(adapter_name_for("x" * 64, "retailer")) == 64


def test_walk_the_form_says_the_steps_and_time_a_job_plans(console_with_tiny_model, tmp_path):
    """ "3 epochs" said neither how many steps nor how long: the form now plans both, the time at the pace of the last
    completed job on the same base model and dataset."""
    from services.training import build_config, plan_job

    def plan_caption(at: AppTest) -> str:
        (caption,) = [unescaped(c.value) for c in at.caption if unescaped(c.value).startswith("Plan:")]
        return caption

    at = training_page().run()
    field(at, "selectbox", "base_model").select("tiny-llama")
    field(at, "text_input", "adapter_name").set_value("paced")
    set_advanced(at, True).run()
    field(at, "number_input", "max_steps").set_value(3)
    field(at, "number_input", "batch_size").set_value(2)
    field(at, "number_input", "max_seq_length").set_value(64).run()
    assert plan_caption(at) == (
        "Plan: about 3 steps of 2 examples, 6 drawn from mapping_sft's 12; no completed job on this base model and "
        "dataset yet to time it by."
    )
    at.button(key="start_training").click().run()
    job = job_manager().all_jobs()[0]
    assert job_manager().wait(job.id, timeout=300).status == JobStatus.COMPLETED
    field(at, "number_input", "max_steps").set_value(6).run()
    caption = plan_caption(at)
    assert caption.startswith("Plan: about 6 steps of 2 examples, 12 drawn from mapping_sft's 12; about ")
    assert caption.endswith(" at the pace of paced, the last job on them.")

    config = build_config(base_model="tiny-llama", train_dataset="mapping_sft", adapter_name="x", max_steps=3)
    elapsed = job_manager().progress(job.id).elapsed
    assert plan_job(config, 12).seconds == pytest.approx(elapsed * config.effective_batch_size * 3 / (3 * 2))
    assert plan_job(config.model_copy(update={"max_steps": 6}), 12).seconds == pytest.approx(
        2 * plan_job(config, 12).seconds
    )
    by_epochs = config.model_copy(update={"max_steps": None, "epochs": 2.5, "batch_size": 4})
    assert (plan_job(by_epochs, 12).steps, plan_job(by_epochs, 12).examples) == (8, 30)
    other = config.model_copy(update={"train_dataset": "another_sft"})
    assert plan_job(other, 12).seconds is None  # examples of another dataset differ in length
