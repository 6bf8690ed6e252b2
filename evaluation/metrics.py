"""The scores of one prediction against its reference, and of one run's rows. Pure functions, no model.

Exact match and token F1 are `training.evaluation`'s (one rule for "correct" in the whole project). ROUGE-L is the
F-measure of the longest common subsequence of the same tokens. Perplexity is exp of the mean negative
log-likelihood per reference token over the whole set (tokens, not examples, weigh equally).
"""

import math
from collections.abc import Sequence

from federation.evaluate import percentile
from registry.plans import is_plan
from training.evaluation import TOKEN_PATTERN, criteria_rates, exact_match, judge, token_f1

__all__ = [
    "criteria_rates",
    "is_plan",
    "judge",
    "exact_match",
    "field_of",
    "percentile",
    "perplexity",
    "preference_correct",
    "rouge_l",
    "token_f1",
    "tokens",
]


def tokens(text: str) -> list[str]:
    return TOKEN_PATTERN.findall(text)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (one row of the dynamic programme at a time)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 (beta 1): 2PR/(P+R) with P = LCS/len(prediction), R = LCS/len(reference), in tokens."""
    predicted, expected = tokens(prediction), tokens(reference)
    if not predicted or not expected:
        return float(not predicted and not expected)
    common = _lcs(predicted, expected)
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def perplexity(logprob_sums: Sequence[float], token_counts: Sequence[int]) -> float:
    """exp(-(sum of log-probabilities) / (sum of tokens)) over every reference token of the set."""
    total = sum(token_counts)
    if not total:
        raise ValueError("perplexity needs at least one reference token")
    return math.exp(-sum(logprob_sums) / total)


def preference_correct(chosen_logprob: float, rejected_logprob: float) -> bool:
    """The target prefers the chosen answer when it gives it a strictly higher log-likelihood."""
    return chosen_logprob > rejected_logprob


def field_of(reference: str, task: object = None) -> str | None:
    """The RMIS field a mapping example is about: its generator's `task`, else the `field:` before the value."""
    if isinstance(task, str) and task.strip():
        return task.strip()
    head, colon, _ = reference.partition(":")
    head = head.strip()
    if colon and head and head.replace("_", "").isalnum() and head == head.lower():
        return head
    return None
