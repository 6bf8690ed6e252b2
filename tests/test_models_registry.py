"""Models registry, Settings and Activity on a real registry and real model folders (no training needed)."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


def _copy(folder: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def test_a_valid_folder_registers_and_is_listed_and_trainable_by_name(registry, tiny_folder):
    from services.models import get_model, list_models, register_base_model
    from training.base_models import resolve_base_model

    entry = register_base_model("tiny", tiny_folder)
    assert entry.kind == "base" and entry.source == "registered" and entry.architecture == "LlamaForCausalLM"
    assert entry.parameters > 0 and entry.dtype == "float32" and len(entry.details["fingerprint"]) == 64
    assert get_model("tiny").path == str(tiny_folder.resolve())
    assert [e.name for e in list_models("base", search="tiny")] == ["tiny"]
    assert resolve_base_model("tiny").path == tiny_folder.resolve()


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda f: (f / "pytorch_model.bin").write_bytes(b"\x80\x04pickle"),
            r"pickled checkpoint files \(pytorch_model.bin\)",
        ),
        (lambda f: (f / "model.safetensors").rename(f / "model.pt"), "pickled checkpoint files"),
        (
            lambda f: (f / "config.json").write_text(
                json.dumps({**json.loads((f / "config.json").read_text()), "auto_map": {"AutoModel": "m.Model"}})
            ),
            "auto_map: the model needs its own Python code",
        ),
        (lambda f: (f / "modeling_evil.py").write_text("import os"), "ships Python files"),
        (lambda f: (f / "tokenizer.json").unlink(), "has no tokenizer"),
        (lambda f: (f / "config.json").unlink(), "has no config.json"),
        (lambda f: (f / "model.safetensors").unlink(), r"has no \*.safetensors"),
    ],
    ids=[
        "bin-beside-safetensors",
        "pickle-only",
        "remote-code",
        "python-files",
        "no-tokenizer",
        "no-config",
        "no-weights",
    ],
)
def test_unsafe_or_incomplete_folders_are_refused_with_the_reason_and_write_nothing(
    registry, tiny_folder, tmp_path, change, message
):
    from services import ConsoleError
    from services.models import list_models, register_base_model

    folder = _copy(tiny_folder, tmp_path, "candidate")
    change(folder)
    with pytest.raises(ConsoleError, match=message):
        register_base_model("candidate", folder)
    assert not list(registry.models.glob("*.json"))
    assert "candidate" not in [e.name for e in list_models("base")]


def test_names_and_duplicates_are_refused(registry, tiny_folder):
    from services import ConsoleError
    from services.models import register_base_model

    register_base_model("tiny", tiny_folder)
    with pytest.raises(ConsoleError, match="already registered"):
        register_base_model("tiny", tiny_folder)
    with pytest.raises(ConsoleError, match="already registered as 'tiny'"):
        register_base_model("tiny2", tiny_folder)
    with pytest.raises(ConsoleError, match="path separator"):
        register_base_model("../x", tiny_folder)


def test_description_and_tags_are_edited_searched_and_filtered(registry, tiny_folder):
    from services import ConsoleError
    from services.models import delete_model, list_models, register_base_model, update_model

    register_base_model("tiny", tiny_folder)
    entry = update_model("tiny", "base", description="<script>x</script> small llama", tags=["test", " test", "cpu"])
    assert entry.description == "<script>x</script> small llama" and entry.tags == ["test", "cpu"]
    assert [e.name for e in list_models(search="small llama")] == ["tiny"]
    assert [e.name for e in list_models(tags=["cpu"])] == ["tiny"]
    assert list_models(tags=["gpu"]) == []
    with pytest.raises(ConsoleError, match="longer than 32"):
        update_model("tiny", "base", tags=["x" * 40])
    with pytest.raises(ConsoleError, match="Unknown model type"):
        list_models("checkpoint")
    delete_model("tiny", "base")
    assert list_models("base", search="tiny") == [] and tiny_folder.is_dir()


def test_a_cached_base_model_is_dated_by_its_converted_weights(registry, tiny_folder, tmp_path, monkeypatch):
    from services.models import list_models

    monkeypatch.setenv("RMN_LORA_MODELS", str(tmp_path / "models"))
    cached = _copy(tiny_folder, tmp_path / "models", "cached-tiny")
    (entry,) = [m for m in list_models("base") if m.name == "cached-tiny"]
    assert entry.source == "models cache"
    # Not an empty "Created": when its weights were written onto this machine.
    assert entry.created == datetime.fromtimestamp((cached / "config.json").stat().st_mtime, UTC)


def test_the_embedded_model_cannot_be_deleted(registry):
    from services.models import delete_model

    with pytest.raises(Exception, match="No registered model"):
        delete_model("SmolLM2-135M-Instruct", "base")


def test_settings_are_saved_atomically_applied_now_and_survive_a_restart(registry):
    from services.runtime import inference_engine, job_manager
    from services.settings import get_settings, settings_table, update_settings

    before = job_manager().concurrency
    assert before == 1
    settings = update_settings(
        max_concurrent_jobs=3,
        max_loaded_models=4,
        theme="dark",
        page_size=50,
        cpu_hour_price=0.5,
        training_defaults={"epochs": 2, "lora_r": 32},
    )
    assert settings.max_concurrent_jobs == 3 and job_manager().concurrency == 3
    assert inference_engine().max_models == 4
    rows = {r.name: r for r in settings_table()}
    assert rows["page_size"].source == "settings file" and rows["max_upload_mb"].source == "default"
    assert rows["home"].source == "environment" and not rows["home"].editable
    saved = json.loads(registry.settings_file.read_text())
    assert saved["training_defaults"] == {"epochs": 2.0, "lora_r": 32}
    assert not [p for p in registry.root.iterdir() if p.is_file() and p.name.endswith(".tmp")]
    # A restart: a new process reads the same registry and gets the saved values.
    script = (
        "from registry.settings import get_settings; from training.jobs import JobManager; "
        "from registry.layout import open_registry; s = get_settings(); "
        "print(s.theme, s.page_size, s.max_concurrent_jobs, s.training_defaults['lora_r'], "
        "JobManager(open_registry()).concurrency)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=os.environ)
    assert done.stdout.split() == ["dark", "50", "3", "32", "3"]
    assert get_settings().cpu_hour_price == 0.5


def test_bad_settings_are_refused_and_nothing_is_written(registry, monkeypatch):
    from services.settings import SettingsError, restore_defaults, settings_file_problem, update_settings

    update_settings(page_size=30)
    before = registry.settings_file.read_bytes()
    with pytest.raises(SettingsError, match="page_size"):
        update_settings(page_size=1)
    with pytest.raises(SettingsError, match="lora r must be greater than or equal to 1"):
        update_settings(training_defaults={"lora_r": 0})
    with pytest.raises(SettingsError, match="chosen per job"):
        update_settings(training_defaults={"adapter_name": "x"})
    with pytest.raises(SettingsError, match="cannot be changed here"):
        update_settings(home="/tmp")
    monkeypatch.setenv("RMN_LORA_THEME", "dark")
    with pytest.raises(SettingsError, match="RMN_LORA_THEME"):
        update_settings(theme="light")
    assert registry.settings_file.read_bytes() == before
    registry.settings_file.write_text("{not json")
    from services.settings import get_settings

    assert get_settings().page_size == 25 and "cannot be read as JSON" in settings_file_problem()
    restore_defaults()
    assert not registry.settings_file.exists() and settings_file_problem() is None


def test_activity_filters_by_area_time_and_text_and_exports(registry):
    from registry.activity import log_event
    from services.activity import activity_areas, export_activity, recent_activity

    log_event("dataset.uploaded", "Uploaded amazon_sft (1,270 rows)", dataset="amazon_sft")
    log_event("job.completed", "Job job_1 completed", job_id="job_1")
    log_event("package.published", 'Published amazon-v1-merged, comma, "quoted"', package="amazon-v1-merged")
    with open(registry.activity_log, "a") as handle:
        handle.write("{torn line\n")
    everything = recent_activity(None, text="")
    assert [e["kind"] for e in recent_activity(None, kinds=["job", "package"])] == [
        "package.published",
        "job.completed",
    ]
    assert [e["kind"] for e in recent_activity(None, text="AMAZON")] == ["package.published", "dataset.uploaded"]
    assert recent_activity(None, since=datetime.now(UTC) + timedelta(minutes=1), kinds=["job"]) == []
    assert activity_areas() == ["dataset", "job", "package"]
    rows = list(csv.reader(io.StringIO(export_activity(everything, "csv").decode())))
    assert (
        rows[0] == ["ts", "kind", "message", "details"] and rows[1][2] == 'Published amazon-v1-merged, comma, "quoted"'
    )
    assert json.loads(rows[1][3]) == {"package": "amazon-v1-merged"}
    lines = export_activity(everything, "jsonl").decode().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == [e["kind"] for e in everything]
