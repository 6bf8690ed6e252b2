"""Useful-FLOP counting for the efficiency figure, checked against torch's own FLOP counter on a real step."""

import pytest

from tests.tiny_model import build_tiny_model


@pytest.fixture(scope="module")
def tiny_peft(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    path = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny", hidden_size=64, layers=3)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def test_weights_are_counted_by_role_from_the_model_shapes(tiny_peft):
    from training.flops import model_cost

    config = tiny_peft.config
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    layer = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]
    cost = model_cost(tiny_peft, checkpointing=False)
    assert cost.frozen_weights == config.num_hidden_layers * sum(a * b for a, b in layer)
    assert cost.adapter_weights == config.num_hidden_layers * sum(4 * (a + b) for a, b in layer)
    assert cost.head_weights == h * v
    assert cost.attention_width == config.num_hidden_layers * h
    assert model_cost(tiny_peft, checkpointing=True).flops([10], 4) > cost.flops([10], 4)


def test_the_count_matches_torchs_flop_counter_on_a_real_training_step(tiny_peft):
    """Forward and backward of one unpadded sequence, LM head on every position: torch counts the matmuls run."""
    import dataclasses

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from training.flops import model_cost

    length = 48
    ids = torch.randint(3, tiny_peft.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0))
    tiny_peft.train()
    with FlopCounterMode(display=False) as counter:
        tiny_peft(input_ids=ids, labels=ids).loss.backward()
    assert set(counter.get_flop_counts()["Global"]) == {torch.ops.aten.mm}  # CPU attention is not counted
    cost = dataclasses.replace(model_cost(tiny_peft, checkpointing=False), attention_width=0)
    # Autograd skips the input gradient of the first layer's frozen q/k/v: nothing before them needs one.
    config = tiny_peft.config
    kv = config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
    skipped = 2 * (config.hidden_size**2 + 2 * config.hidden_size * kv) * length
    assert cost.flops([length], answer_tokens=length) - skipped == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_padded_and_padding_free_batches_of_the_same_examples_count_the_same():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from training.flops import ModelCost, answer_tokens, sequence_lengths

    # Prompt tokens are labelled -100, as TRL's completion-only loss does; the last two tokens are the answer.
    examples = [{"input_ids": list(range(n)), "labels": [-100] * (n - 2) + [n - 2, n - 1]} for n in (5, 9, 3)]
    padded = DataCollatorForLanguageModeling(pad_token_id=0)(examples)
    flat = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
    assert "attention_mask" not in flat and padded["input_ids"].shape == (3, 9)
    assert sequence_lengths(padded) == sequence_lengths(flat) == [5, 9, 3]
    assert answer_tokens(padded) == answer_tokens(flat) == 6
    cost = ModelCost(1000, 10, 500, 64, checkpointing=True)
    assert cost.flops(sequence_lengths(padded), 6) == cost.flops(sequence_lengths(flat), 6)


def test_the_matmul_peak_is_measured():
    import torch

    from training.flops import matmul_peak

    assert matmul_peak(torch.float32, seconds=0.2, size=256) > 1e8


def test_measuring_the_matmul_peak_leaves_the_global_generator_alone():
    """The peak is measured as a job starts: the job's shuffling and dropout must draw what they would without it."""
    import torch

    from training.flops import matmul_peak

    torch.manual_seed(7)
    expected = torch.rand(4)
    torch.manual_seed(7)
    matmul_peak(torch.float32, seconds=0.01, size=64)
    assert torch.equal(torch.rand(4), expected)
