"""LoRA dropout for CPU jobs: PEFT's Bernoulli mask on the LoRA input, drawn from 16 random bits per element.

torch's CPU dropout draws one Bernoulli sample per element, about 4x the time of the mask it makes: with
PEFT's separate mask for each of a layer's seven LoRA inputs that was ~15% of a training step of the
embedded model. Here one 64-bit draw from torch's generator gives four elements' 16-bit lanes, and an
element is kept where its lane is at least p x 65536: the same independent keep-with-probability 1 - p mask
(p rounded to 1/65536) with the same 1 / (1 - p) scaling, drawn from the same seeded generator (so runs
repeat, and activation checkpointing replays the mask). The mask is 0 or 1 in the input's dtype, made from the lanes
with int16 clamps (torch's CPU kernels for bool tensors, the comparison and `where`, took 3-5x as long as a multiply:
a tenth of a rank's step with p = 0.05); the input is multiplied by it and then by the scale (the fused LoRA forward folds the
scale into B's scaling instead: one pass less over the input), and only the mask is saved for the backward pass. CUDA keeps PEFT's nn.Dropout: its fused kernel is already cheap.
The mask is a custom op, so torch.compile keeps it as one opaque, seeded node instead of breaking the graph at
`random_` (inductor's own in-kernel dropout draws a Philox number per element, slower than torch's bernoulli_);
its tag makes the partitioner save the mask for the backward pass rather than draw it again. The compiler merges calls
of an op with the same arguments (common subexpression elimination, which spares torch's own random ops but not a custom
op's), so the LoRA inputs that are one tensor (q, k and v's; gate and up's) would share one mask in a compiled graph:
each dropout passes its role in the layer (`draw`), which the op ignores but which keeps the calls apart.
"""

from typing import Any

import torch

LANES = 65536


@torch.library.custom_op("rmn_lora::keep_mask", mutates_args=(), tags=(torch.Tag.nondeterministic_seeded,))
def keep_mask(x: torch.Tensor, threshold: int, draw: int) -> torch.Tensor:
    """1 where an element of `x` is kept (its 16-bit lane of one 64-bit draw is at least `threshold` of 65536), else
    0, in `x`'s dtype. `draw` tells calls on the same input apart; the values do not depend on it."""
    count = x.numel()
    bits = torch.empty((count + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    # A lane read as int16 is uniform on [-32768, 32767]: kept where it is at or above `lowest`, the clamp maps the
    # lanes below to lowest - 1 and those at or above to lowest, and the subtraction to 0 and 1.
    lowest = threshold - LANES // 2
    lanes = bits.view(torch.int16)[:count].view(x.shape)
    return lanes.clamp(lowest - 1, lowest).sub_(lowest - 1).to(x.dtype)


@keep_mask.register_fake
def _keep_mask_shape(x: torch.Tensor, threshold: int, draw: int) -> torch.Tensor:
    return torch.empty_like(x)


class LoraDropout(torch.nn.Module):
    """Drop-in for the nn.Dropout PEFT puts before each LoRA A matrix (identity outside training)."""

    def __init__(self, p: float, draw: int = 0):
        super().__init__()
        self.p = p
        self.draw = draw  # which of a layer's LoRA inputs this is: the same in every layer, so one graph serves all
        self.threshold = min(round(p * LANES), LANES - 1)
        self.scale = 1.0 / (1.0 - self.threshold / LANES)

    def forward(self, x: Any) -> Any:
        dropped, scale = self.unscaled(x)
        return dropped if scale == 1.0 else dropped.mul_(scale)

    def unscaled(self, x: Any) -> tuple[Any, float]:
        """The input with dropped elements zeroed, and the scale the rest still need: a caller that multiplies the
        result by a matrix can fold the scale into that (small) matrix instead of passing over the input again."""
        if not self.training or self.threshold == 0:
            return x, 1.0
        return x * keep_mask(x.detach(), self.threshold, self.draw), self.scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_lora_dropout(model: Any) -> int:
    """Replace PEFT's nn.Dropout before every LoRA A matrix of `model` with LoraDropout; returns how many. Each gets
    its layer role's number (q_proj's, k_proj's, ... per adapter), so dropouts on one input draw apart when compiled."""
    replaced = 0
    roles: dict[tuple[str, str], int] = {}
    for path, module in model.named_modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                role = roles.setdefault((path.rsplit(".", 1)[-1], name), len(roles))
                dropouts[name] = LoraDropout(dropout.p, role)
                replaced += 1
    return replaced
