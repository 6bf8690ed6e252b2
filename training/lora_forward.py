"""LoRA layers' forward for CPU training: the scaling folded into B at run time and the add fused into B's product.

PEFT computes `result + lora_B(lora_A(dropout(x.to(fp32)))) * scaling`. Under bf16 autocast over a bf16 base that
casts every LoRA input to fp32 (and autocast casts it back to bf16 for lora_A), runs the dropout mask over fp32, and
makes two more passes over the layer's output (the scaling, the add) and their backward: on the embedded model about
a tenth of a training step went to these casts, multiplies and adds. Here the input stays in its dtype under autocast,
and `addmm(result, h, (scaling * B).T)` adds the LoRA branch inside B's matrix product; the scaling multiplies the
small r x out matrix B, not the tokens x out output, and autograd carries it into B's gradient; so does our LoRA
dropout's 1 / (1 - p), which would otherwise be one more pass over the input and its gradient. The parameters, the
saved adapter (B unscaled, the scaling in its config) and merging are unchanged. Any other case (several or disabled
adapters, merged weights, LoRA variants, a LoRA bias, dtypes that differ outside autocast) runs
PEFT's own forward.
"""

import types
from typing import Any

import torch

from training.lora_dropout import LoraDropout


def fused_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """The LoRA layer's output: its base layer's plus the scaled LoRA branch, added inside B's product."""
    adapters = self.active_adapters
    adapter = adapters[0] if len(adapters) == 1 else None
    lora_A = self.lora_A[adapter] if adapter in self.lora_A else None
    autocast = torch.is_autocast_enabled(x.device.type)
    if (
        args
        or kwargs
        or lora_A is None
        or self.disable_adapters
        or self.merged
        or adapter in self.lora_variant
        or self.lora_bias.get(adapter, False)
        or not (autocast or x.dtype == lora_A.weight.dtype == self.base_layer.weight.dtype)
    ):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    lora_B = self.lora_B[adapter]
    dropout = self.lora_dropout[adapter]
    dropped, keep_scale = dropout.unscaled(x) if isinstance(dropout, LoraDropout) else (dropout(x), 1.0)
    hidden = lora_A(dropped)
    scaled = lora_B.weight * (self.scaling[adapter] * keep_scale)
    fused = torch.addmm(result.reshape(-1, result.shape[-1]), hidden.reshape(-1, hidden.shape[-1]), scaled.t())
    return fused.view(result.shape)


def use_fused_lora(model: Any) -> int:
    """Give every plain LoRA linear layer of `model` `fused_forward`; returns how many."""
    from peft.tuners.lora.layer import Linear

    layers = [module for module in model.modules() if type(module) is Linear]
    for layer in layers:
        layer.forward = types.MethodType(fused_forward, layer)
    return len(layers)
