"""Held-out evaluation by generation: exact match and token F1 of greedy answers against references.

For retailer datasets the references are what the mapping computes, so this is the mapping judging the adapter.
"""

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

_TOKEN = re.compile(r"\w+|[^\w\s]")


class GenerationScore(BaseModel):
    """Accuracy (exact match after trimming) and mean token F1 over `count` prompts, with a few examples to read."""

    accuracy: float
    token_f1: float
    count: int
    examples: list[dict[str, str]]


def exact_match(prediction: str, reference: str) -> bool:
    """The one rule for "correct", shared by training's held-out evaluation and federation evaluation."""
    return prediction.strip() == reference.strip()


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = Counter(_TOKEN.findall(prediction)), Counter(_TOKEN.findall(reference))
    overlap = sum((predicted & expected).values())
    if not overlap:
        return float(not predicted and not expected)
    precision, recall = overlap / sum(predicted.values()), overlap / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def score_generations(
    model: Any, tokenizer: Any, records: Sequence[dict[str, Any]], *, max_new_tokens: int = 64, batch_size: int = 16
) -> GenerationScore:
    """Greedy answers for evaluation records ({prompt, reference}), prompted with the chat template as in training."""
    import torch

    was_training = model.training
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    predictions: list[str] = []
    try:
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            prompts = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": r["prompt"]}], tokenize=False, add_generation_prompt=True
                )
                for r in batch
            ]
            inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                output = model.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            answers = output[:, inputs["input_ids"].shape[1] :]
            predictions += [text.strip() for text in tokenizer.batch_decode(answers, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    references = [str(r["reference"]).strip() for r in records]
    exact = [exact_match(p, r) for p, r in zip(predictions, references, strict=True)]
    f1 = [token_f1(p, r) for p, r in zip(predictions, references, strict=True)]
    count = len(records)
    return GenerationScore(
        accuracy=sum(exact) / count if count else 0.0,
        token_f1=sum(f1) / count if count else 0.0,
        count=count,
        examples=[
            {"prompt": r["prompt"], "reference": ref, "answer": p}
            for r, ref, p in list(zip(records, references, predictions, strict=True))[:5]
        ],
    )
