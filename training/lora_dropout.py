"""LoRA dropout for CPU jobs: PEFT's Bernoulli mask on the LoRA input, drawn from 16 random bits per element.

torch's CPU dropout draws one Bernoulli sample per element, about 4x the time of the mask it makes: with
PEFT's separate mask for each of a layer's seven LoRA inputs that was ~15% of a training step of the
embedded model. Here one 64-bit draw from torch's generator gives four elements' 16-bit lanes, and an
element is kept where its lane is at least p x 65536: the same independent keep-with-probability 1 - p mask
(p rounded to 1/65536) with the same 1 / (1 - p) scaling, drawn from the same seeded generator (so runs
repeat, and activation checkpointing replays the mask). Only the mask is saved for the backward pass, as
a bool, like torch's own dropout. CUDA keeps PEFT's nn.Dropout: its fused kernel is already cheap.
The mask is a custom op, so torch.compile keeps it as one opaque, seeded node instead of breaking the graph at
`random_` (inductor's own in-kernel dropout draws a Philox number per element, slower than torch's bernoulli_);
its tag makes the partitioner save the mask for the backward pass rather than draw it again.
"""

from typing import Any

import torch

LANES = 65536


@torch.library.custom_op("rmn_lora::keep_mask", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,))
def keep_mask(x: torch.Tensor, threshold: int) -> torch.Tensor:
    """True where an element of `x` is kept: its 16-bit lane of one 64-bit draw is at least `threshold` of 65536."""
    count = x.numel()
    bits = torch.empty((count + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    # A lane read as int16 is uniform on [-32768, 32767]: keep it where it is at or above threshold - 32768.
    return bits.view(torch.int16)[:count].view(x.shape) >= threshold - LANES // 2


@keep_mask.register_fake
def _keep_mask_shape(x: torch.Tensor, threshold: int) -> torch.Tensor:
    return torch.empty_like(x, dtype=torch.bool)


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Any, keep: Any, scale: float) -> Any:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0.0).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: Any) -> tuple[Any, None, None]:
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0.0).mul_(ctx.scale), None, None


class LoraDropout(torch.nn.Module):
    """Drop-in for the nn.Dropout PEFT puts before each LoRA A matrix (identity outside training)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.threshold = round(p * LANES)
        self.scale = 1.0 / (1.0 - self.threshold / LANES)

    def forward(self, x: Any) -> Any:
        if not self.training or self.threshold == 0:
            return x
        return _MaskedScale.apply(x, keep_mask(x, self.threshold), self.scale)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_lora_dropout(model: Any) -> int:
    """Replace PEFT's nn.Dropout before every LoRA A matrix of `model` with LoraDropout; returns how many."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                dropouts[name] = LoraDropout(dropout.p)
                replaced += 1
    return replaced
