"""Attention for CPU training: SDPA's math kernel for short sequences, its flash kernel for long ones.

torch's CPU flash-attention kernel pays off on long sequences but not on the short ones SFT sets are made of. Forward
and backward of one layer of the embedded model (bf16, 9 query / 3 key-value heads of 64, one thread, CPU time):
the math kernel took 0.29x the flash kernel's time at 8 x 36 tokens, 0.46x at 4 x 73, 0.56-0.66x at 110-128, and
1.07x at 256, 1.25x at 512, 2-3x at 1024. So sequences of up to `MATH_MAX_LENGTH` tokens go to the math kernel.
Both compute the same attention (same masks, GQA, scaling) through transformers' own SDPA function; a compiled
region keeps SDPA's default choice, except for the grouped product below. The kernel is chosen with `sdpa_kernel`,
which sets process-wide flags: the calls made here hold a lock while they are set, so two threads can never leave them
changed.

On short training sequences of a model with grouped key-value heads (the embedded model: 9 query heads over 3) the
math kernel is not used either: transformers copies every key and value head out to its query heads (`repeat_kv`)
and torch's math kernel multiplies each head on its own, with a NaN-safe softmax. `grouped_attention` is
transformers' eager attention instead (bf16 products, fp32 softmax, masked scores at the fp32 minimum) with each
key-value head's query heads stacked as the rows of one product, no copies: forward and backward of one layer of the
embedded model at 4 x 73 tokens in bf16 took 1.8 ms against 4.9 ms for the math kernel (one thread, CPU time). Rows
that attend to nothing (left padding) average the masked keys instead of giving 0, as eager attention does; no loss
reads them. Dropout, soft-capping, position biases, caches and calls with fewer queries than keys keep SDPA.
Compiled layers take it too: SDPA's default there is the flash kernel, whose backward took a third of a compiled step.
"""

import threading
from typing import Any

import torch

NAME = "rmn_sdpa"
MATH_MAX_LENGTH = 192
_FLAGS = threading.Lock()


def short_sequence_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> Any:
    """transformers' SDPA attention, on SDPA's math kernel for short sequences on CPU."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    short = query.device.type == "cpu" and max(query.shape[2], key.shape[2]) <= MATH_MAX_LENGTH
    if short and query.shape[1] > key.shape[1] and groupable(query, key, attention_mask, kwargs, module.training):
        return grouped_attention(module, query, key, value, attention_mask, **kwargs)
    if not short or torch.compiler.is_compiling():
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with _FLAGS, sdpa_kernel(SDPBackend.MATH):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


# Keyword arguments transformers' attention layers pass that change nothing here (the rest keep SDPA).
_PLAIN = {"scaling", "is_causal", "dropout", "position_ids", "use_cache", "output_attentions", "output_hidden_states"}


def groupable(query: Any, key: Any, attention_mask: Any, kwargs: dict[str, Any], training: bool) -> bool:
    """Whether `grouped_attention` computes what SDPA would for this call."""
    dropout = kwargs.get("dropout") or 0.0
    return (
        query.shape[2] == key.shape[2]
        and query.shape[1] % key.shape[1] == 0
        and set(kwargs) <= _PLAIN
        and not kwargs.get("output_attentions")
        and not (dropout and training)
        and (attention_mask is None or (attention_mask.dtype == torch.bool and attention_mask.shape[1] == 1))
    )


def grouped_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any
) -> tuple[Any, None]:
    """Eager attention with each key-value head's query heads as the rows of one product (no `repeat_kv` copies)."""
    batch, heads, length, width = query.shape
    kv_heads = key.shape[1]
    groups = heads // kv_heads
    scaling = kwargs.get("scaling")
    scores = torch.matmul(query.reshape(batch, kv_heads, groups * length, width), key.transpose(2, 3))
    scores = scores.view(batch, kv_heads, groups, length, length).float() * (scaling or width**-0.5)
    if attention_mask is not None:
        keep = attention_mask[:, :, None]
    elif kwargs.get("is_causal", getattr(module, "is_causal", True)) and length > 1:
        keep = torch.ones(length, length, dtype=torch.bool, device=query.device).tril()
    else:
        keep = None
    if keep is not None:
        scores = scores.masked_fill(~keep, torch.finfo(torch.float32).min)
    weights = torch.softmax(scores, dim=-1).to(value.dtype)
    output = torch.matmul(weights.view(batch, kv_heads, groups * length, length), value)
    return output.view(batch, heads, length, width).transpose(1, 2).contiguous(), None


def use_short_sequence_attention(model: Any) -> None:
    """Switch a transformers model loaded with SDPA attention to `short_sequence_sdpa` (SDPA's masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, short_sequence_sdpa)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model.set_attn_implementation(NAME)
