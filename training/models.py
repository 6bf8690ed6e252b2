"""Loading a base model and its tokenizer: one place for training, inference and the benches.

A quantized (4-bit or 8-bit) base is quantized while it loads, one tensor at a time: each full-precision tensor
is read from its safetensors file with plain reads into a buffer of its own (`safetensors_io`), quantized by
bitsandbytes and dropped before the next one is read. transformers' loader memory-maps every shard instead, and each page it
reads stays in the process's resident memory until the last shard is closed, so a 4-bit load peaked at the
size of the whole full-precision checkpoint (10.2 GB for a 1.7B fp32 model whose 4-bit form holds 1.9 GB),
and a 7B model could not be loaded in 4-bit on a 24 GB machine. A full-precision base keeps transformers'
memory-mapped load: its weights are needed in full anyway, and mapping them costs no copy.
"""

import json
from pathlib import Path
from typing import Any, Literal

from training.base_models import MODEL_LOAD_LOCK
from training.errors import ModelLoadError
from training.safetensors_io import StoredTensor, file_tensors, release_freed_memory
from training.stack import import_stack

Quantization = Literal["none", "4bit", "8bit"]

# Used only when a base model ships no chat template: the assistant turn ends with the model's EOS token,
# so a model trained with it learns to stop.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# Put in front of a chat template that injects a default system prompt ("You are a helpful AI assistant named
# SmolLM...") when a conversation has none: an empty system turn is a third of the tokens and says as little.
EMPTY_SYSTEM_PREFIX = (
    "{%- if not messages or messages[0]['role'] != 'system' %}"
    "{%- set messages = [{'role': 'system', 'content': ''}] + messages %}{%- endif %}"
)
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def load_tokenizer(path: Path) -> Any:
    """The model's tokenizer with a chat template that ends answers with EOS and adds no default system prompt."""
    tokenizer = import_stack().AutoTokenizer.from_pretrained(path, local_files_only=True)
    if not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    elif injects_default_system_prompt(tokenizer):
        tokenizer.chat_template = EMPTY_SYSTEM_PREFIX + tokenizer.chat_template
    if tokenizer.eos_token is None:
        raise ModelLoadError(f"The tokenizer in {path} has no end-of-sequence token, so answers could never end.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def injects_default_system_prompt(tokenizer: Any) -> bool:
    """True when the template renders a user-only conversation longer than the same one with an empty system turn.

    That default prompt would be trained on every example (and the adapter saved with this tokenizer is prompted
    the same way), so it is dropped; templates that refuse a system role are left alone.
    """
    user = [{"role": "user", "content": "ping"}]
    try:
        bare = tokenizer.apply_chat_template(user, tokenize=False)
        with_empty = tokenizer.apply_chat_template([{"role": "system", "content": ""}, *user], tokenize=False)
    except Exception:  # jinja raises whatever the template author chose, e.g. "System role not supported"
        return False
    return len(tokenizer(bare, add_special_tokens=False)["input_ids"]) > len(
        tokenizer(with_empty, add_special_tokens=False)["input_ids"]
    )


def quantization_config(quantization: Quantization, compute_dtype: Any) -> Any:
    """bitsandbytes settings: NF4 with double quantization (QLoRA's) for 4-bit, LLM.int8 for 8-bit."""
    import_stack()
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_model(
    path: Path,
    *,
    dtype: Any,
    quantization: Quantization = "none",
    compute_dtype: Any = None,
    device_map: dict[str, Any] | None = None,
) -> Any:
    """A causal LM from safetensors only; quantized tensor by tensor while loading when `quantization` is set.

    `dtype` is the dtype of the weights that stay in floating point (all of them without quantization; the
    embeddings, norms and output layer with it); `device_map` places the model (e.g. {"": 0} for one GPU).
    Loads hold the process-wide model-load lock: concurrent `from_pretrained` calls leave models half-loaded.
    """
    import_stack()
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    common: dict[str, Any] = {"dtype": dtype, "attn_implementation": "sdpa", "device_map": device_map}
    with MODEL_LOAD_LOCK:
        if quantization == "none":
            return AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, local_files_only=True, **common)
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        model_class = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
        model = model_class.from_pretrained(
            None,
            config=config,
            state_dict=streamed_state_dict(path),
            quantization_config=quantization_config(quantization, compute_dtype or dtype),
            **common,
        )
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(path, local_files_only=True)
    release_freed_memory()
    return model


def checkpoint_files(path: Path) -> list[Path]:
    """The safetensors files transformers would load from `path`: the index's shards, or the single file."""
    index = path / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ModelLoadError(f"{index} is not a readable safetensors index; the model folder is damaged.") from None
        files = [path / name for name in sorted(set(weight_map.values()))]
    elif (path / SINGLE_FILE).is_file():
        files = [path / SINGLE_FILE]
    else:
        files = sorted(path.glob("*.safetensors"))[:1] if len(list(path.glob("*.safetensors"))) == 1 else []
    missing = [file.name for file in files if not file.is_file()]
    if not files or missing:
        raise ModelLoadError(
            f"{path} lacks {', '.join(missing) if missing else f'{SINGLE_FILE} or {INDEX_FILE}'}: "
            "copy the whole model folder again."
        )
    return files


def streamed_state_dict(path: Path) -> dict[str, StoredTensor]:
    """Every tensor of the checkpoint, described from the safetensors headers and read only when asked for."""
    tensors: dict[str, StoredTensor] = {}
    for file in checkpoint_files(path):
        tensors.update(file_tensors(file))
    return tensors
