"""Base-model loading: a quantized base is quantized tensor by tensor while it loads, never held in full precision."""

import json
import sys
from pathlib import Path

import pytest

from tests.peak_memory import peak_rss_growth
from tests.tiny_model import build_tiny_model

TOKENS = [[5, 6, 7, 8, 9, 10, 11, 12]]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def single_base(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "single", hidden_size=64, layers=3)


@pytest.fixture(scope="module")
def sharded_base(single_base, tmp_path_factory) -> Path:
    """The same tiny Llama saved in several shards (with an index), as large checkpoints are."""
    from transformers import AutoModelForCausalLM

    single = single_base
    folder = tmp_path_factory.mktemp("models") / "sharded"
    AutoModelForCausalLM.from_pretrained(single).save_pretrained(folder, max_shard_size="60KB")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (single / name).is_file():
            (folder / name).write_bytes((single / name).read_bytes())
    assert len(list(folder.glob("*.safetensors"))) > 3
    return folder


def _unsupported(kind: str) -> str | None:
    from training.worker import quantization_unsupported

    return quantization_unsupported(kind, "cpu")


def _logits(model, ids=TOKENS):
    import torch

    with torch.no_grad():
        return model(torch.tensor(ids)).logits


@pytest.mark.parametrize("kind", ["4bit", "8bit"])
@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_quantized_while_loading_gives_the_same_logits_as_transformers_own_loader(
    kind, layout, single_base, sharded_base
):
    import torch
    from transformers import AutoModelForCausalLM

    from training.models import load_model, quantization_config

    if _unsupported(kind):
        pytest.skip(f"bitsandbytes {kind} does not work on this CPU")
    path = sharded_base if layout == "sharded" else single_base
    old = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, quantization_config=quantization_config(kind, torch.float32)
    )
    new = load_model(path, dtype=torch.float32, quantization=kind, compute_dtype=torch.float32)
    quantized = type(old.model.layers[0].mlp.up_proj)
    assert quantized.__module__.startswith("bitsandbytes")
    assert type(new.model.layers[0].mlp.up_proj) is quantized
    assert new.lm_head.weight.data_ptr() == new.model.embed_tokens.weight.data_ptr()  # still tied
    assert torch.equal(_logits(new), _logits(old))


def test_a_full_precision_load_is_transformers_own(sharded_base):
    import torch
    from transformers import AutoModelForCausalLM

    from training.models import load_model

    old = AutoModelForCausalLM.from_pretrained(sharded_base, dtype=torch.float32)
    assert torch.equal(_logits(load_model(sharded_base, dtype=torch.float32)), _logits(old))


def _build_wide_model(folder: Path) -> int:
    """A Llama whose linear weights (8 x 4 MB) dominate everything else, in 5 shards; returns the checkpoint bytes."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=256,
        hidden_size=512,
        intermediate_size=2048,
        num_hidden_layers=6,
        num_attention_heads=8,
        num_key_value_heads=8,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, max_shard_size="30MB")
    return sum(file.stat().st_size for file in folder.glob("*.safetensors"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the kernel's peak RSS from /proc")
def test_a_4bit_load_never_holds_every_full_precision_weight_at_once(single_base, tmp_path):
    """The loader's peak is the 4-bit model plus about one full-precision tensor, far under the checkpoint's size.

    transformers' own loader memory-maps the shards and keeps every page it read resident until the end, so its
    peak grows by the whole checkpoint: that control run shows the measurement catches it.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from training.models import load_model, quantization_config

    if _unsupported("4bit"):
        pytest.skip("bitsandbytes 4-bit does not work on this CPU")
    folder = tmp_path / "wide"
    checkpoint = _build_wide_model(folder)
    assert len(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]) > 40
    assert len({*folder.glob("*.safetensors")}) >= 3

    config = quantization_config("4bit", torch.float32)
    for warm_up in (  # first loads import and build code paths whose memory is not the loader's
        lambda: load_model(single_base, dtype=torch.float32, quantization="4bit"),
        lambda: AutoModelForCausalLM.from_pretrained(single_base, dtype=torch.float32, quantization_config=config),
    ):
        warm_up()
    growth, model = peak_rss_growth(lambda: load_model(folder, dtype=torch.float32, quantization="4bit"))
    assert growth < 0.5 * checkpoint, (
        f"loading peaked {growth / 2**20:.0f} MiB over a {checkpoint / 2**20:.0f} MiB file"
    )
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    del model

    mapped, model = peak_rss_growth(
        lambda: AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, quantization_config=config)
    )
    assert mapped > 0.8 * checkpoint, f"control: transformers' loader peaked only {mapped / 2**20:.0f} MiB"


def test_a_missing_shard_is_a_clear_error(sharded_base, tmp_path):
    import shutil

    import torch

    from training.errors import ModelLoadError
    from training.models import load_model

    if _unsupported("4bit"):
        pytest.skip("bitsandbytes 4-bit does not work on this CPU")
    broken = Path(shutil.copytree(sharded_base, tmp_path / "broken"))
    next(broken.glob("model-*.safetensors")).unlink()
    with pytest.raises(ModelLoadError, match="copy the whole model folder again"):
        load_model(broken, dtype=torch.float32, quantization="4bit")
