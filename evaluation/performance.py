"""The Performance Dashboard's figures: the request log aggregated per target and over time, beside each
target's latest evaluation and its cost per 1,000 generated tokens.

Cost of a request is its latency x the device-hour price: the engine serves one request at a time per model, so
the machine is busy for that long. That is an upper bound when different models serve at once.
"""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from evaluation.cost import run_cost
from evaluation.metrics import percentile
from evaluation.runs import RunState, RunStatus
from federation.request_log import RequestRecord
from registry.settings import Settings


class TargetPerformance(BaseModel):
    """One row of the adapter table: what served requests, how well it scores, how fast and at what cost."""

    target: str
    adapters: list[str]
    requests: int
    errors: int
    error_rate: float
    completion_tokens: int
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    tokens_per_second: float | None
    cost_usd: float
    cost_per_1k_tokens: float | None
    accuracy: float | None = None
    accuracy_dataset: str | None = None
    evaluation: str | None = None
    size_bytes: int | None = None


def by_target(
    records: Iterable[RequestRecord],
    runs: Sequence[RunState],
    settings: Settings,
    sizes: dict[str, int] | None = None,
) -> list[TargetPerformance]:
    """One row per target that served a request or was evaluated, busiest first."""
    grouped: dict[str, list[RequestRecord]] = {}
    for record in records:
        grouped.setdefault(record.target, []).append(record)
    latest: dict[str, RunState] = {}
    for run in runs:  # newest first: the first completed run of a target is its latest
        if run.status == RunStatus.COMPLETED and "exact_match" in run.metrics:
            latest.setdefault(run.config.target.label, run)
    rows = []
    for target in sorted(set(grouped) | set(latest), key=lambda t: -len(grouped.get(t, []))):
        served = grouped.get(target, [])
        ok = [r for r in served if r.ok]
        tokens = sum(r.completion_tokens for r in ok)
        seconds = sum(r.latency_ms for r in served) / 1000
        latencies = [r.latency_ms for r in ok]
        cost = run_cost(seconds, settings)
        run = latest.get(target)
        adapters = sorted({a for r in served for a in r.adapters})
        rows.append(
            TargetPerformance(
                target=target,
                adapters=adapters,
                requests=len(served),
                errors=len(served) - len(ok),
                error_rate=(len(served) - len(ok)) / len(served) if served else 0.0,
                completion_tokens=tokens,
                p50_latency_ms=round(percentile(latencies, 0.5), 1) if latencies else None,
                p95_latency_ms=round(percentile(latencies, 0.95), 1) if latencies else None,
                tokens_per_second=round(tokens / seconds, 2) if seconds > 0 and tokens else None,
                cost_usd=cost,
                cost_per_1k_tokens=round(cost / tokens * 1000, 6) if tokens else None,
                accuracy=run.metrics["exact_match"] if run else None,
                accuracy_dataset=run.config.source.get("name") if run else None,
                evaluation=run.id if run else None,
                size_bytes=sum((sizes or {}).get(a, 0) for a in adapters) or None,
            )
        )
    return rows


def timeline(records: Iterable[RequestRecord], bucket_seconds: int = 60) -> list[dict[str, Any]]:
    """Requests, errors and generated tokens per time bucket (minutes by default), oldest first."""
    buckets: dict[datetime, dict[str, Any]] = {}
    for record in records:
        stamp = record.time.timestamp()
        start = datetime.fromtimestamp(stamp - stamp % bucket_seconds, tz=record.time.tzinfo)
        bucket = buckets.setdefault(start, {"time": start, "requests": 0, "errors": 0, "completion_tokens": 0})
        bucket["requests"] += 1
        bucket["errors"] += 0 if record.ok else 1
        bucket["completion_tokens"] += record.completion_tokens
    rows = [buckets[key] for key in sorted(buckets)]
    for row in rows:
        row["error_rate"] = row["errors"] / row["requests"]
        row["requests_per_minute"] = row["requests"] * 60 / bucket_seconds
    return rows
