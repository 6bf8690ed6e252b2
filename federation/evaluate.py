"""Scoring federations on prompts, with references where there are any: the A/B view and the quality bench.

Each prompt is answered on its own, so the latencies are those a user sees; accuracy is exact match after
trimming (for retailer data the reference is what the mapping computes, so the mapping is the judge), or for a
reference that is a campaign plan the plan judge's overall pass, with its criteria (channel, split, uplift).
"""

import statistics
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from federation.engine import GenerationSettings, InferenceEngine, default_engine
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
    """One federation over a prompt set; accuracy and F1 are None when no prompt had a reference.

    `criteria`: each plan criterion's pass rate over the prompts whose reference is a plan (empty when none is).
    """

    federation_id: str
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


def evaluate_federation(
    federation: Federation,
    records: Sequence[dict[str, Any]],
    settings: GenerationSettings | None = None,
    engine: InferenceEngine | None = None,
) -> FederationScore:
    engine = engine or default_engine()
    rows = []
    for record in records:
        result = run_federation(federation, str(record["prompt"]), settings, engine)
        reference = record.get("reference")
        reference = None if reference is None else str(reference).strip()
        verdict = None if reference is None else judge(result.response, reference)
        rows.append(
            EvalRow(
                prompt=str(record["prompt"]),
                reference=reference,
                response=result.response,
                correct=None if verdict is None else verdict.passed,
                criteria={} if verdict is None else verdict.criteria,
                token_f1=None if reference is None else token_f1(result.response, reference),
                latency_ms=result.latency_ms,
                tokens=result.tokens,
                adapters_used=result.adapters_used,
            )
        )
    judged = [row for row in rows if row.correct is not None]
    latencies = [row.latency_ms for row in rows]
    tokens = sum(row.tokens for row in rows)
    return FederationScore(
        federation_id=federation.id,
        name=federation.name,
        rows=rows,
        accuracy=sum(bool(row.correct) for row in judged) / len(judged) if judged else None,
        criteria=criteria_rates([row.criteria for row in judged]),
        token_f1=sum(row.token_f1 or 0.0 for row in judged) / len(judged) if judged else None,
        p50_latency_ms=round(percentile(latencies, 0.5), 2),
        p95_latency_ms=round(percentile(latencies, 0.95), 2),
        ms_per_token=round(sum(latencies) / tokens, 3) if tokens else 0.0,
    )


def compare_federations(
    a: Federation,
    b: Federation,
    records: Sequence[dict[str, Any]],
    settings: GenerationSettings | None = None,
    engine: InferenceEngine | None = None,
) -> tuple[FederationScore, FederationScore]:
    """A/B: the same prompts through both federations."""
    return evaluate_federation(a, records, settings, engine), evaluate_federation(b, records, settings, engine)
