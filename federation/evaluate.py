"""Scoring federations on prompts, with references where there are any: the A/B view and the quality bench.

Either side of an A/B is a federation run here or a model on an OpenAI-compatible endpoint (vLLM, SGLang, another
console), asked through `federation.remote` with the same system message and decoding settings. Each prompt is
answered on its own, so the latencies are those a user sees (an endpoint's include the round trip); accuracy is
exact match after trimming (for retailer data the reference is what the mapping computes, so the mapping is the
judge), or for a reference that is a campaign plan the plan judge's overall pass, with its criteria (channel,
split, uplift).
"""

import statistics
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import httpx
from pydantic import BaseModel

from federation.engine import GenerationSettings, InferenceEngine, default_engine
from federation.remote import EndpointModel
from federation.run import run_federation
from federation.spec import Federation
from training.evaluation import criteria_rates, judge, token_f1


class EvalRow(BaseModel):
    prompt: str
    reference: str | None
    response: str
    correct: bool | None
    criteria: dict[str, bool] = {}
    token_f1: float | None
    latency_ms: float
    tokens: int
    adapters_used: list[str]


class FederationScore(BaseModel):
    """One side (a federation, or a model on an endpoint) over a prompt set; accuracy and F1 are None when no
    prompt had a reference.

    `federation_id` is None for a model on an endpoint; `name` labels either.
    `criteria`: each plan criterion's pass rate over the prompts whose reference is a plan (empty when none is).
    """

    federation_id: str | None
    name: str
    rows: list[EvalRow]
    accuracy: float | None
    criteria: dict[str, float] = {}
    token_f1: float | None
    p50_latency_ms: float
    p95_latency_ms: float
    ms_per_token: float


def percentile(values: Sequence[float], share: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


class _Answer(NamedTuple):
    response: str
    latency_ms: float
    tokens: int
    adapters_used: list[str]


def _answers(
    side: Federation | EndpointModel,
    prompts: Sequence[str],
    settings: GenerationSettings,
    engine: InferenceEngine | None,
) -> Iterator[_Answer]:
    """Each prompt's answer, one at a time; an endpoint's over one keep-alive connection."""
    if isinstance(side, EndpointModel):
        with httpx.Client() as client:
            for prompt in prompts:
                stream = side.stream(prompt, settings, client)
                for _ in stream:
                    pass
                assert stream.answer is not None, "a finished stream has its answer"
                yield _Answer(stream.answer.text, stream.answer.latency_ms, stream.answer.completion_tokens, [])
        return
    engine = engine or default_engine()
    for prompt in prompts:
        result = run_federation(side, prompt, settings, engine)
        yield _Answer(result.response, result.latency_ms, result.tokens, result.adapters_used)


def evaluate_federation(
    side: Federation | EndpointModel,
    records: Sequence[dict[str, Any]],
    settings: GenerationSettings | None = None,
    engine: InferenceEngine | None = None,
) -> FederationScore:
    prompts = [str(record["prompt"]) for record in records]
    rows = []
    for record, prompt, answer in zip(
        records, prompts, _answers(side, prompts, settings or GenerationSettings(), engine), strict=True
    ):
        reference = record.get("reference")
        reference = None if reference is None else str(reference).strip()
        verdict = None if reference is None else judge(answer.response, reference)
        rows.append(
            EvalRow(
                prompt=prompt,
                reference=reference,
                response=answer.response,
                correct=None if verdict is None else verdict.passed,
                criteria={} if verdict is None else verdict.criteria,
                token_f1=None if reference is None else token_f1(answer.response, reference),
                latency_ms=answer.latency_ms,
                tokens=answer.tokens,
                adapters_used=answer.adapters_used,
            )
        )
    judged = [row for row in rows if row.correct is not None]
    latencies = [row.latency_ms for row in rows]
    tokens = sum(row.tokens for row in rows)
    return FederationScore(
        federation_id=side.id if isinstance(side, Federation) else None,
        name=side.name if isinstance(side, Federation) else side.label,
        rows=rows,
        accuracy=sum(bool(row.correct) for row in judged) / len(judged) if judged else None,
        criteria=criteria_rates([row.criteria for row in judged]),
        token_f1=sum(row.token_f1 or 0.0 for row in judged) / len(judged) if judged else None,
        p50_latency_ms=round(percentile(latencies, 0.5), 2),
        p95_latency_ms=round(percentile(latencies, 0.95), 2),
        ms_per_token=round(sum(latencies) / tokens, 3) if tokens else 0.0,
    )


def compare_federations(
    a: Federation | EndpointModel,
    b: Federation | EndpointModel,
    records: Sequence[dict[str, Any]],
    settings: GenerationSettings | None = None,
    engine: InferenceEngine | None = None,
) -> tuple[FederationScore, FederationScore]:
    """A/B: the same prompts through both sides (federations, or models on endpoints)."""
    return evaluate_federation(a, records, settings, engine), evaluate_federation(b, records, settings, engine)
