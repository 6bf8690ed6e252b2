"""Training Jobs and Adapters pages with AppTest: a job submitted from the form trains a tiny model to completion."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from tiny_model import build_tiny_model

from services import upload_dataset
from services.training import job_manager
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
    return AppTest.from_file(str(ROOT / "pages" / "training_jobs.py"), default_timeout=60)


def test_form_refuses_impossible_values_and_queues_nothing(console_with_tiny_model):
    at = training_page().run()
    assert not at.exception
    at.selectbox(key="job_base_model").select("tiny-llama")
    at.text_input(key="job_adapter_name").set_value("../escape").run()
    at.button(key="start_training").click().run()
    assert at.error and "adapter name" in at.error[0].value.lower()
    at.text_input(key="job_adapter_name").set_value("ok_name")
    at.number_input(key="job_lora_r").set_value(1)
    at.text_input(key="job_target_modules").set_value("no_such_proj").run()
    at.button(key="start_training").click().run()
    assert at.error and "no_such_proj" in at.error[0].value
    assert job_manager().all_jobs() == []


def test_job_from_the_form_completes_and_its_adapter_is_listed(console_with_tiny_model):
    at = training_page().run()
    assert at.selectbox(key="job_base_model").value == "SmolLM2-135M-Instruct"
    at.selectbox(key="job_base_model").select("tiny-llama")
    at.text_input(key="job_adapter_name").set_value("amazon_form")
    at.number_input(key="job_max_steps").set_value(4)
    at.number_input(key="job_max_seq_length").set_value(64).run()
    at.button(key="start_training").click().run()
    assert not at.exception and at.success, [e.value for e in at.error]
    job = job_manager().all_jobs()[0]
    finished = job_manager().wait(job.id, timeout=300)
    assert finished.status == JobStatus.COMPLETED, finished.error
    at.run()
    assert any("COMPLETED" in m.value for m in at.markdown)
    adapters = AppTest.from_file(str(ROOT / "pages" / "adapters.py"), default_timeout=60).run()
    assert not adapters.exception
    assert list(adapters.dataframe[0].value["Adapter"]) == ["amazon_form"]
    commands = [code.value for code in adapters.code]
    assert any(c.startswith("vllm serve tiny-llama --enable-lora --lora-modules amazon_form-v1=") for c in commands)
    assert any(c.startswith("python convert_lora_to_gguf.py ") for c in commands)


def test_a_preset_sets_every_training_setting_and_keeps_what_the_job_is_about(console_with_tiny_model):
    at = training_page().run()
    at.text_input(key="job_adapter_name").set_value("amazon_fast")
    at.selectbox(key="job_preset").select("dpo preferences").run()
    assert at.selectbox(key="job_objective").value == "dpo"
    at.selectbox(key="job_preset").select("retailer mapping (fast)").run()
    assert not at.exception
    assert at.selectbox(key="job_objective").value == "sft"  # left out by this preset: back to the default
    assert at.number_input(key="job_loraplus_lr_ratio").value == 12
    assert at.text_input(key="job_adapter_name").value == "amazon_fast"
    at.selectbox(key="job_preset").select("balanced").run()
    assert at.number_input(key="job_loraplus_lr_ratio").value is None
    assert at.number_input(key="job_learning_rate").value == pytest.approx(2e-4)
