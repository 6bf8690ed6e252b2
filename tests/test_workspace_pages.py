"""Models, Publish, Activity, Settings and Train Model pages rendered with AppTest against a real temp registry."""

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from registry.errors import ConsoleError
from tests.tiny_model import build_tiny_model

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("models.py", "publish.py", "activity.py", "settings.py", "train_wizard.py")


def page(name: str) -> AppTest:
    """One page through the app's navigation (so its page links resolve)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page(f"views/{name}")
    return at


@pytest.mark.parametrize("name", PAGES)
def test_every_new_page_renders_its_empty_state_without_an_exception(registry, name):
    at = page(name).run()
    assert not at.exception
    assert not [e for e in at.error]


def test_models_page_registers_refuses_and_edits(registry, tmp_path):
    folder = build_tiny_model(tmp_path / "tiny")
    (tmp_path / "bad").mkdir()
    at = page("models.py").run()
    at.text_input(key="register_name").input("tiny")
    at.text_input(key="register_path").input(str(folder))
    at.button(key="FormSubmitter:register_model-Register").click().run()
    assert not at.exception and "Registered tiny" in at.success[0].value
    assert "tiny" in at.dataframe[0].value["Name"].tolist()
    at.text_input(key="register_name").input("bad")
    at.text_input(key="register_path").input(str(tmp_path / "bad"))
    at.button(key="FormSubmitter:register_model-Register").click().run()
    assert "has no config.json" in re.sub(r"\\(.)", r"\1", at.error[0].value)  # shown as plain text
    at.selectbox(key="models_selected").select("base: tiny").run()
    at.text_area(key="desc_base_tiny").input("A tiny <b>model</b>")
    at.text_input(key="tags_base_tiny").input("test, cpu")
    at.button(key="FormSubmitter:edit_base_tiny-Save description and tags").click().run()
    assert not at.exception and "Saved the description and tags of tiny" in at.success[0].value
    row = at.dataframe[0].value.set_index("Name").loc["tiny"]
    assert row["Tags"] == "test, cpu"
    # An editor sees the saved description once, as the box's plain text (never Markdown or HTML).
    assert at.text_area(key="desc_base_tiny").value == "A tiny <b>model</b>"
    assert not [t.value for t in at.text if t.value.startswith("Description:")]


def test_activity_page_filters_and_exports(registry):
    from registry.activity import log_event

    log_event("dataset.uploaded", "Uploaded alpha")
    log_event("package.published", "Published beta")
    at = page("activity.py").run()
    assert not at.exception
    assert at.dataframe[0].value["What happened"].tolist() == ["Published beta", "Uploaded alpha"]
    at.multiselect(key="activity_kinds").select("package").run()
    assert at.dataframe[0].value["What happened"].tolist() == ["Published beta"]
    at.text_input(key="activity_text").input("nothing like this").run()
    assert "No activity matches." in at.info[0].value


def test_settings_page_saves_refuses_and_shows_sources(registry):
    at = page("settings.py").run()
    at.number_input(key="settings_page_size").set_value(50)
    at.button(key="FormSubmitter:settings_form-Save").click().run()
    assert not at.exception and [toast.value.replace("\\", "") for toast in at.toast] == ["Saved: page_size."]
    assert json.loads(registry.settings_file.read_text()) == {"page_size": 50}
    table = at.dataframe[0].value.set_index("Setting")
    assert table.loc["page_size", "Source"] == "settings file" and table.loc["home", "Source"] == "environment"
    at.text_area(key="settings_training_defaults").input('{"lora_r": 0}')
    at.button(key="FormSubmitter:settings_form-Save").click().run()
    assert "lora r must be greater than or equal to 1" in at.error[0].value
    assert json.loads(registry.settings_file.read_text()) == {"page_size": 50}


def test_models_page_pages_through_a_thousand_adapters(registry, tmp_path):
    """1,000 adapter versions registered by the real registry code from one real (2-step) training run."""
    import threading

    from registry.datasets import write_records
    from registry.shapes import DatasetKind
    from services.models import list_models
    from training.adapters import register_adapter
    from training.config import build_config
    from training.worker import run_training

    base = build_tiny_model(tmp_path / "tiny")
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(8)]
    write_records("few_sft", rows, DatasetKind.ALPACA, origin="test", registry=registry)
    config = build_config(
        adapter_name="many", base_model=str(base), train_dataset="few_sft", max_steps=2, epochs=None, lora_r=1
    )
    result = run_training(config, tmp_path / "job", stop=threading.Event())
    for index in range(1000):
        register_adapter(result, config.model_copy(update={"adapter_name": f"many_{index:04d}"}), registry=registry)
    assert len(list_models("adapter")) == 1000
    at = page("models.py").run()
    assert not at.exception
    assert "Showing 1–25 of 1,001" in [c.value for c in at.caption]
    at.number_input(key="models_page").set_value(41).run()
    assert "Showing 1001–1001 of 1,001" in [c.value for c in at.caption]
    at.text_input(key="models_q").input("many_0999").run()
    assert at.dataframe[0].value["Name"].tolist() == ["many_0999"]


def test_the_python_api_starts_a_job_where_the_pages_do(registry, tmp_path):
    """`submit_training_job` starts from Settings' saved training defaults like the form and the wizard: a preset
    goes over them, the call's own config over both, and what none of them names keeps the saved value."""
    from services import upload_dataset
    from services.runtime import job_manager
    from services.settings import new_job_values, update_settings
    from services.training import submit_training_job

    rows = [{"instruction": f"Map 'v{i}'.", "output": f"p{i}"} for i in range(4)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upload_dataset("mapping_sft", tmp_path / "m.jsonl")
    update_settings(training_defaults={"lora_r": 32, "learning_rate": 1e-4, "seed": 7, "max_steps": 12})
    manager = job_manager()
    limit = manager.concurrency
    manager.set_concurrency(0)  # queued, never run: only where each job starts is looked at
    try:
        plain = manager.get(submit_training_job("retailer", "api_saved", "mapping_sft")).config
        assert (plain.lora_r, plain.learning_rate, plain.seed, plain.max_steps) == (32, 1e-4, 7, 12)
        demo = manager.get(
            submit_training_job("retailer", "api_demo", "mapping_sft", preset="quick demo", config={"lora_r": 4})
        ).config
        assert (demo.lora_r, demo.max_steps, demo.learning_rate, demo.seed) == (4, 30, 3e-4, 7)
        assert new_job_values("quick demo")["max_steps"] == 30 and new_job_values("quick demo")["seed"] == 7
        with pytest.raises(ConsoleError, match="Unknown preset"):
            submit_training_job("retailer", "api_bad", "mapping_sft", preset="turbo")
    finally:
        for job in manager.all_jobs():
            manager.cancel(job.id)
        manager.set_concurrency(limit)


def test_saved_training_defaults_are_where_the_form_and_the_wizard_start(registry, tmp_path):
    """Settings' training defaults start both the one-page form (under the presets) and the wizard."""
    from services import upload_dataset
    from services.settings import update_settings

    rows = [{"instruction": f"Map 'v{i}'.", "output": f"p{i}"} for i in range(4)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upload_dataset("mapping_sft", tmp_path / "m.jsonl")

    update_settings(training_defaults={"lora_r": 32, "learning_rate": 1e-4, "epochs": 1.5, "seed": 7})

    def field(at, kind, name):
        (widget,) = [w for w in getattr(at, kind) if str(w.key).startswith("job[") and w.key.endswith(f"].{name}")]
        return widget.value

    at = page("training_jobs.py")
    at.session_state["job_advanced"] = True  # Advanced settings open: its fields are drawn only then
    at.run()
    assert not at.exception
    assert at.selectbox(key="job_preset").value == "saved defaults (Settings)"
    assert (field(at, "number_input", "lora_r"), field(at, "number_input", "epochs")) == (32, 1.5)
    assert field(at, "number_input", "learning_rate") == pytest.approx(1e-4)
    at.selectbox(key="job_preset").select("quick demo").run()
    assert (field(at, "number_input", "lora_r"), field(at, "number_input", "max_steps")) == (8, 30)
    assert field(at, "number_input", "seed") == 7  # not named by the preset: the saved default stays
    at.selectbox(key="job_preset").select("saved defaults (Settings)").run()
    assert (field(at, "number_input", "lora_r"), field(at, "number_input", "epochs")) == (32, 1.5)

    wizard = page("train_wizard.py").run()
    assert not wizard.exception
    start = wizard.session_state["wizard_values"]
    assert (start["lora_r"], start["epochs"], start["seed"]) == (32, 1.5, 7)


def test_walk_the_wizard_sets_the_adapter_type_from_the_training_dataset(registry):
    """The wizard asks the adapter type first ("retailer" by default) and the dataset two steps later: kept, the walk's
    retailer type on planning data. The chosen dataset sets the type and says so; a type set back against it shows
    a warning on the first step."""
    from services.demo import seed_demo

    seed_demo(registry)
    wizard = page("train_wizard.py")
    wizard.session_state["wizard_step"] = 2
    wizard.run()
    wizard.selectbox(key="wizard_w_train_dataset").select("task_planning_sft").run()
    assert not wizard.exception
    assert wizard.session_state["wizard_values"]["adapter_type"] == "task"
    assert any("Adapter type task" in c.value for c in wizard.caption)
    wizard.session_state["wizard_step"] = 0
    wizard.run()
    assert wizard.selectbox(key="wizard_w_adapter_type").value == "task"
    assert not wizard.warning
    wizard.selectbox(key="wizard_w_adapter_type").select("retailer").run()
    (warning,) = wizard.warning
    assert "was made to train a task adapter; this one will be a retailer adapter" in warning.value


def test_walk_every_page_writes_a_parameter_count_one_way(registry, tmp_path):
    """Parameter counts read four ways (issue 11 closing walk): the form "135M", the wizard "135 M", Models
    "134.5 M" and "134,515,008", Federation "134.5M params". Every page writes views.common.parameter_count's."""
    from services import upload_dataset
    from services.models import get_model
    from views.common import parameter_count

    build_tiny_model(tmp_path / "tiny")
    at = page("models.py").run()
    at.text_input(key="register_name").input("tiny")
    at.text_input(key="register_path").input(str(tmp_path / "tiny"))
    at.button(key="FormSubmitter:register_model-Register").click().run()
    count = parameter_count(get_model("tiny").parameters)
    assert count == "57K"  # 57,072 parameters
    assert f"tiny: LlamaForCausalLM, {count} parameters" in re.sub(r"\\(.)", r"\1", at.success[0].value)
    assert at.dataframe[0].value.set_index("Name").loc["tiny", "Parameters"] == count
    at.selectbox(key="models_selected").select("base: tiny").run()
    assert [m.value for m in at.metric if m.label == "Parameters"] == [count]

    (tmp_path / "m.jsonl").write_text('{"instruction": "Map adType sp", "output": "placement_type: sp"}\n')
    upload_dataset("mapping_sft", tmp_path / "m.jsonl")  # the training form is drawn once there is data
    form = page("training_jobs.py").run()
    (base,) = [w for w in form.selectbox if str(w.key).endswith("].base_model")]
    assert f"tiny · {count}" in base.options
    wizard = page("train_wizard.py")
    wizard.session_state["wizard_step"] = 1
    wizard.run()
    assert any(
        f"tiny · LlamaForCausalLM · {count} · " in o for o in wizard.selectbox(key="wizard_w_base_model").options
    )
    # the federation stack has no page state of its own to reach here: no view formats a count by hand
    by_hand = re.compile(r"\.parameters\s*/\s*1e\d|\.parameters:,")
    assert not [p.name for p in (ROOT / "views").glob("*.py") if by_hand.search(p.read_text())]


def test_walk_dpo_beta_shows_for_dpo_and_kto_jobs_only_and_keeps_its_value(registry):
    """Advanced settings showed DPO beta for an SFT job (issue 11 closing walk). A field that names its objectives in
    JobConfig is drawn for those only; a value typed for a DPO job survives a turn to SFT and back."""
    from services.demo import seed_demo

    seed_demo(registry)
    at = page("training_jobs.py")
    at.session_state["job_advanced"] = True
    at.run()

    def beta():
        return [w for w in at.number_input if str(w.key).endswith("].dpo_beta")]

    def objective():
        (widget,) = [w for w in at.selectbox if str(w.key).endswith("].objective")]
        return widget

    assert objective().value == "sft" and not beta()
    assert [w for w in at.number_input if str(w.key).endswith("].learning_rate")]  # Advanced settings is open
    objective().select("dpo").run()
    (box,) = beta()
    box.set_value(0.3).run()
    objective().select("sft").run()
    assert not at.exception and not beta()
    objective().select("kto").run()
    assert [w.value for w in beta()] == [pytest.approx(0.3)]
