"""Tiny causal language models built offline, so training tests run real PEFT/TRL code in seconds.

The tokenizer is a byte-level BPE trained on a small corpus with the `tokenizers` library and given a
ChatML chat template; the model is a 2-layer Llama with random weights. Both are saved as a normal
Hugging Face folder (safetensors), i.e. exactly what a user's "local base model" looks like.
"""

from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
DEFAULT_CORPUS = [
    "Map field 'adType' with value 'sp' from Amazon to RMIS. placement_type: sponsored_product",
    "Map field 'adType' with value 'sd' from Walmart to RMIS. placement_type: sponsored_display",
    "Map field 'cost_micros' with value '1250000' from Target to RMIS. cost: 1.25",
    "Map field 'clicks' with value '17' from Instacart to RMIS. clicks: 17",
    "Is this creative compliant? Yes, it is compliant. No, it makes an unverified claim.",
    "system user assistant You are a helpful assistant for retail media.",
]


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 320):
    """A fast tokenizer with pad/eos tokens and a ChatML template, trained on `corpus`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator((corpus or DEFAULT_CORPUS) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        bos_token=None,
        chat_template=CHATML,
        model_max_length=2048,
    )


def in_memory_llama_config():
    """The smallest Llama the kernel tests build in memory: 2 layers, 4 query and 2 key-value heads of 8, vocab 64."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )


def build_tiny_model(
    folder: Path, *, hidden_size: int = 48, layers: int = 2, seed: int = 0, corpus: list[str] | None = None
) -> Path:
    """Save a tiny Llama + tokenizer to `folder` (safetensors) and return the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(corpus)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def train_tiny_adapter(
    name: str,
    dataset: str,
    base_model: str | Path,
    job_dir: Path,
    *,
    steps: int,
    rank: int = 4,
    registry=None,
    **fields,
):
    """Train `name` on `dataset` with the real worker and register it: the settings every test adapter shares (a
    high learning rate, no warm-up and no dropout, so a few dozen steps learn a fixed answer), `fields` for the rest.
    Returns the job's config."""
    import threading

    from training.adapters import register_adapter
    from training.config import build_config
    from training.worker import run_training

    values = {"batch_size": 4, "learning_rate": 5e-3, "lora_alpha": 16, "save_steps": 1000, "max_seq_length": 96}
    values |= {"warmup_ratio": 0.0, "lora_dropout": 0.0, "epochs": None} | fields
    config = build_config(
        adapter_name=name, base_model=str(base_model), train_dataset=dataset, max_steps=steps, lora_r=rank, **values
    )
    register_adapter(run_training(config, job_dir, stop=threading.Event()), config, registry=registry)
    return config
