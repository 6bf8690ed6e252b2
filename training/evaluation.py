"""Held-out evaluation by generation: greedy answers judged against references, and their token F1.

`judge` is the one rule for "correct": for retailer datasets the references are what the mapping computes, so exact
match is the mapping judging the adapter; a reference that is a campaign plan (`registry.plans`) is judged by the
plan judge (channel, budget split, uplift within the priors' interval), whose criteria are reported one by one.
"""

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from registry.plans import CRITERIA, is_plan, judge_plan

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks: the token of F1 and ROUGE-L


class Judgement(BaseModel):
    """One answer against its reference: passed, and the plan criteria when the reference is a plan (else empty)."""

    passed: bool
    criteria: dict[str, bool] = {}


class GenerationScore(BaseModel):
    """Judged accuracy and mean token F1 over `count` prompts, with a few examples to read.

    `criteria`: the pass rate of each plan criterion over the prompts whose reference is a plan; `by_task`: the
    accuracy per record `task` (the RMIS field of a mapping example), so the weak field is visible; `misses`: every
    answer judged wrong (prompt, reference, answer, task), so what the weak field gets wrong can be read too.
    """

    accuracy: float
    token_f1: float
    count: int
    examples: list[dict[str, str]]
    criteria: dict[str, float] = {}
    by_task: dict[str, float] = {}
    misses: list[dict[str, str]] = []


def exact_match(prediction: str, reference: str) -> bool:
    """Correct for a reference that is not a plan: the same text after trimming."""
    return prediction.strip() == reference.strip()


def judge(prediction: str, reference: str) -> Judgement:
    """The one rule for "correct", shared by training's held-out evaluation, federation evaluation and the benches."""
    if is_plan(reference):
        verdict = judge_plan(prediction, reference)
        return Judgement(passed=verdict.passed, criteria=verdict.criteria())
    return Judgement(passed=exact_match(prediction, reference))


def criteria_rates(criteria: Sequence[dict[str, bool]]) -> dict[str, float]:
    """Each plan criterion's pass rate over the answers that were judged as plans (empty when none was)."""
    plans = [c for c in criteria if c]
    return {name: sum(c[name] for c in plans) / len(plans) for name in CRITERIA} if plans else {}


def accuracy_by_task(records: Sequence[dict[str, Any]], judgements: Sequence[Judgement]) -> dict[str, float]:
    """Accuracy per record `task` (e.g. the RMIS field), when the records cover several tasks."""
    tasks: dict[str, list[bool]] = {}
    for record, verdict in zip(records, judgements, strict=True):
        if record.get("task") is not None:
            tasks.setdefault(str(record["task"]), []).append(verdict.passed)
    return {task: sum(v) / len(v) for task, v in sorted(tasks.items())} if len(tasks) > 1 else {}


def token_f1(prediction: str, reference: str) -> float:
    predicted, expected = Counter(TOKEN_PATTERN.findall(prediction)), Counter(TOKEN_PATTERN.findall(reference))
    overlap = sum((predicted & expected).values())
    if not overlap:
        return float(not predicted and not expected)
    precision, recall = overlap / sum(predicted.values()), overlap / sum(expected.values())
    return 2 * precision * recall / (precision + recall)


def score_generations(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    *,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
) -> GenerationScore:
    """Greedy answers for evaluation records ({prompt, reference}), prompted with the chat template as in training.

    By default an answer may run 16 tokens past the longest reference, so no right answer is cut short.
    """
    import torch

    references = [str(r["reference"]).strip() for r in records]
    if max_new_tokens is None:
        longest = max((len(tokenizer(ref, add_special_tokens=False).input_ids) for ref in references), default=0)
        max_new_tokens = longest + 16

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
    judgements = [judge(p, r) for p, r in zip(predictions, references, strict=True)]
    f1 = [token_f1(p, r) for p, r in zip(predictions, references, strict=True)]
    count = len(records)
    return GenerationScore(
        accuracy=sum(j.passed for j in judgements) / count if count else 0.0,
        criteria=criteria_rates([j.criteria for j in judgements]),
        by_task=accuracy_by_task(records, judgements),
        token_f1=sum(f1) / count if count else 0.0,
        count=count,
        examples=[
            {"prompt": r["prompt"], "reference": ref, "answer": p}
            for r, ref, p in list(zip(records, references, predictions, strict=True))[:5]
        ],
        misses=[
            {"prompt": r["prompt"], "reference": ref, "answer": p, "task": str(r.get("task") or "")}
            for r, ref, p, j in zip(records, references, predictions, judgements, strict=True)
            if not j.passed
        ],
    )
