"""torch.compile of a model's decoder layers for training: RMSNorm, RoPE, SiLU x up, the use of the LoRA dropout mask
and LoRA's scale-and-add fused into inductor kernels around the matmuls (which stay oneDNN / MKL calls).

Regional: the layers are one class, so one compiled graph (with dynamic sequence lengths) serves every layer, and
compiling costs one layer's forward and backward instead of the whole model's. In place (`Module.compile`), so
PEFT's module names, saving and resuming are unchanged. Measured by `bench/training_throughput.py --ab compile`.
"""

import os
import shutil
from typing import Any


def compiler_missing() -> str | None:
    """Why inductor cannot build its CPU kernels here (it compiles C++ with $CXX, else g++), or None."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler):
        return None
    return f"torch.compile builds C++ kernels with {compiler}, which this machine does not have"


def decoder_layers(model: Any) -> list[Any]:
    """The model's repeated blocks: modules of the classes transformers lists as never split across devices."""
    names = set(getattr(model.get_base_model(), "_no_split_modules", None) or ())
    return [module for module in model.modules() if type(module).__name__ in names]


def compile_decoder_layers(model: Any) -> int:
    """Compile every decoder layer in place (dynamic shapes: batches differ in length); returns how many."""
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def is_compiled(model: Any) -> bool:
    """Whether `compile_decoder_layers` compiled this model's layers (and `release_compiled` has not undone it)."""
    return any(layer._compiled_call_impl is not None for layer in decoder_layers(model))


def release_compiled(model: Any) -> None:
    """Back to eager after training: generation (held-out scoring) would otherwise compile graphs of its own."""
    for layer in decoder_layers(model):
        layer._compiled_call_impl = None
