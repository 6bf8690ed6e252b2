"""Attention for CPU training: SDPA's math kernel for short sequences, its flash kernel for long ones.

torch's CPU flash-attention kernel pays off on long sequences but not on the short ones SFT sets are made of. Forward
and backward of one layer of the embedded model (bf16, 9 query / 3 key-value heads of 64, one thread, CPU time):
the math kernel took 0.29x the flash kernel's time at 8 x 36 tokens, 0.46x at 4 x 73, 0.56-0.66x at 110-128, and
1.07x at 256, 1.25x at 512, 2-3x at 1024. So sequences of up to `MATH_MAX_LENGTH` tokens go to the math kernel.
Both compute the same attention (same masks, GQA, scaling) through transformers' own SDPA function; a compiled
region keeps SDPA's default choice. The kernel is chosen with `sdpa_kernel`, which sets process-wide flags: the calls
made here hold a lock while they are set, so two threads can never leave them changed.
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
    if not short or torch.compiler.is_compiling():
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with _FLAGS, sdpa_kernel(SDPBackend.MATH):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def use_short_sequence_attention(model: Any) -> None:
    """Switch a transformers model loaded with SDPA attention to `short_sequence_sdpa` (SDPA's masks)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, short_sequence_sdpa)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    model.set_attn_implementation(NAME)
