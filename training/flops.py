"""How much useful arithmetic a LoRA step does, and how fast this machine can multiply matrices.

Useful work counts the decoder on every non-padding input token and the LM head on the answer positions only
(the ones a loss is computed on), with the base frozen: a frozen linear layer costs 2 FLOPs per weight forward
and 2 backward (the input's gradient; no weight gradient), a LoRA matrix 2 forward and 4 backward, causal
attention 2 L^2 d forward and 4 L^2 d backward per layer (L the sequence length, d the heads' width), and
activation checkpointing runs the decoder's forward once more. Padding, and the LM head on prompt positions,
are work a trainer may do but that teaches nothing, so they are not counted: the same job counts the same
useful FLOPs whichever trainer runs it. Efficiency is that rate against a matrix-multiply peak measured on this
machine, in the dtype the job computes in, just before the job starts.
"""

import time
from dataclasses import dataclass
from typing import Any

OUTPUT_LAYERS = ("lm_head", "embed_out")


@dataclass(frozen=True)
class ModelCost:
    """The per-token and per-sequence FLOP counts of one model as a job trains it."""

    frozen_weights: int  # weights of the decoder's frozen linear layers
    adapter_weights: int  # weights of the LoRA matrices
    head_weights: int  # the output layer's (hidden x vocabulary)
    attention_width: int  # layers x heads x head_dim, summed
    checkpointing: bool

    def flops(self, lengths: list[int], answer_tokens: int) -> float:
        """Useful FLOPs of one batch: its sequences' lengths (no padding) and how many answer tokens it has."""
        tokens = sum(lengths)
        squares = sum(length * length for length in lengths) / 2  # causal: half of L x L
        forward = 2 * self.frozen_weights * tokens + 2 * self.adapter_weights * tokens
        forward += 4 * self.attention_width * squares
        backward = 2 * self.frozen_weights * tokens + 4 * self.adapter_weights * tokens
        backward += 8 * self.attention_width * squares
        head = 4 * self.head_weights * answer_tokens
        return forward * (2 if self.checkpointing else 1) + backward + head


def model_cost(model: Any, checkpointing: bool) -> ModelCost:
    """Count a (PEFT-wrapped, possibly quantized) causal LM's weights by role from its modules' shapes."""
    frozen = adapter = head = 0
    for name, module in model.named_modules():
        shape = _linear_shape(module)
        if shape is None:
            continue
        weights = shape[0] * shape[1]
        if ".lora_A." in name or ".lora_B." in name:
            adapter += weights
        elif any(part in OUTPUT_LAYERS for part in name.split(".")):
            head = max(head, weights)
        else:
            frozen += weights
    config = model.config
    layers = config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return ModelCost(frozen, adapter, head, layers * config.num_attention_heads * head_dim, checkpointing)


def _linear_shape(module: Any) -> tuple[int, int] | None:
    """(in, out) of a leaf linear layer, bitsandbytes' included; None for anything else (PEFT's wrappers too)."""
    import torch

    if not isinstance(module, torch.nn.Linear):
        return None
    return module.in_features, module.out_features


class FlopRecorder:
    """Wraps a trainer's data collator and records the useful FLOPs of each training batch it builds, in order.

    The data loader builds a batch ahead of the step that trains on it, so what a number of optimizer steps did
    is the sum over their own batches (`trained`), not over every batch built. `paused` is set around
    evaluations, whose batches go through the same collator but train nothing.
    """

    def __init__(self, collator: Any, cost: ModelCost):
        self.collator = collator
        self.cost = cost
        self.batches: list[float] = []
        self.paused = False

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(features)
        if not self.paused:
            self.batches.append(self.cost.flops(sequence_lengths(batch), answer_tokens(batch)))
        return batch

    def trained(self, first_batch: int, batches: int) -> float:
        """FLOPs of `batches` training batches from the `first_batch`-th one recorded."""
        return sum(self.batches[first_batch : first_batch + batches])


def sequence_lengths(batch: dict[str, Any]) -> list[int]:
    """Unpadded lengths of a batch's sequences: from its attention mask, or from where position ids restart at 0
    in a padding-free batch (all sequences flattened into one row)."""
    import torch

    if batch.get("attention_mask") is not None:
        return [int(n) for n in batch["attention_mask"].sum(dim=-1).reshape(-1).tolist()]
    positions = batch.get("position_ids")
    if positions is None:
        ids = batch["input_ids"]
        return [ids.shape[-1]] * (ids.numel() // ids.shape[-1])
    starts = torch.nonzero(positions.reshape(-1) == 0).reshape(-1).tolist() + [positions.numel()]
    return [end - start for start, end in zip(starts, starts[1:], strict=False) if end > start]


def answer_tokens(batch: dict[str, Any]) -> int:
    """Positions whose next token is a label: a row's first label is never predicted (padding-free rows mask it)."""
    labels = batch.get("labels")
    return int((labels[..., 1:] != -100).sum()) if labels is not None else 0


def dataset_flops(cost: ModelCost, dataset: Any, max_length: int) -> float:
    """Useful FLOPs of one pass over a tokenized SFT dataset, as `FlopRecorder` counts its batches: each row up to
    `max_length` tokens, and its answer tokens (labels that are not -100 after the first position; from the completion
    or assistant mask where the rows carry no labels yet; every token without either)."""
    import pyarrow.compute as pc

    columns = ("input_ids", "labels", "completion_mask", "assistant_masks")
    table = dataset.select_columns([name for name in columns if name in dataset.column_names]).with_format("arrow")[:]
    lengths = pc.min_element_wise(pc.list_value_length(table.column("input_ids")), max_length).to_pylist()
    if "labels" in table.column_names:
        labels = table.column("labels")
        answers = pc.sum(pc.not_equal(pc.list_flatten(labels), -100)).as_py() or 0
        answers -= pc.sum(pc.not_equal(pc.list_element(labels, 0), -100)).as_py() or 0
    elif mask := next((name for name in columns[2:] if name in table.column_names), None):
        answers = pc.sum(pc.list_flatten(table.column(mask))).as_py() or 0
    else:
        answers = sum(lengths)
    return cost.flops(lengths, min(answers, sum(lengths)))


def matmul_peak(dtype: Any, seconds: float = 1.0, size: int = 1024) -> float:
    """The best FLOP/s of a square matrix multiply in `dtype` over about `seconds`, with torch's current threads."""
    import torch

    # A private generator: drawing from torch's global one would change the job's data order and dropout.
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    torch.mm(a, b)  # the first call picks and warms the kernel
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - started))
    return best
