"""Scoring a target on examples: batched greedy generation and log-likelihoods through the inference engine.

Answers come from `InferenceEngine.generate_batch` (left padding, greedy, one `generate` call per batch), so a run
costs what batching costs, not one `generate` per prompt, and every answer lands in the request log as caller
"evaluation". Gated federations are batched per routed adapter; sequential ones answer one prompt at a time.
Log-likelihoods (perplexity of the references, preference between chosen and rejected) use the same activation.
A model on an OpenAI-compatible endpoint answers each example's conversation as one chat completion (a batch's
requests are sent at once, for the server to batch); endpoints return no log-likelihoods, so only the
generation metrics apply to them.
"""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pydantic import BaseModel

from evaluation.data import EvalSet, Example
from evaluation.metrics import (
    criteria_rates,
    exact_match,
    field_of,
    is_plan,
    judge,
    preference_correct,
    rouge_l,
    token_f1,
)
from evaluation.targets import TargetSpec, federation_of, member_of
from federation.engine import Activation, GenerationSettings, InferenceEngine
from federation.methods import method_of
from federation.remote import RemoteStream
from federation.run import run_federation
from registry.errors import ConsoleError

GENERATION_METRICS = ("exact_match", "token_f1", "rouge_l", "field_accuracy", "plan_judged")
LIKELIHOOD_METRICS = ("perplexity",)
PREFERENCE_METRICS = ("preference_accuracy",)
METRICS: dict[str, str] = {
    "exact_match": "Share of answers equal to the reference after trimming (the project's one rule).",
    "token_f1": "Harmonic mean of token precision and recall against the reference (words and punctuation).",
    "rouge_l": "F-measure of the longest common token subsequence of answer and reference.",
    "field_accuracy": "Exact match per RMIS field of a mapping set: the mapping computed the reference, so it "
    "is the judge.",
    "plan_judged": "Campaign plans judged against the priors' plan: pass rate (plan_pass) and each criterion "
    "(plan_channel, plan_split within 5 points, plan_uplift inside the priors' interval).",
    "perplexity": "exp of the mean negative log-likelihood of the reference tokens (lower is better).",
    "preference_accuracy": "Share of DPO pairs where the target gives the chosen answer a higher log-likelihood "
    "than the rejected one.",
}


class MetricError(ConsoleError):
    """A metric that is unknown or does not fit the dataset (no references, not preference pairs)."""


class Answer(BaseModel):
    response: str
    tokens: int
    latency_ms: float
    first_token_ms: float | None
    adapters_used: list[str]


def plan_metrics(requested: Sequence[str] | None, evalset: EvalSet, remote: bool = False) -> list[str]:
    """The metrics a run computes: the requested ones checked against the dataset (and, for a model on an
    endpoint, `remote`, against what a server returns), or the defaults for its kind."""
    has_fields = any(field_of(e.reference or "", e.task) for e in evalset.examples if e.reference is not None)
    has_plans = any(is_plan(e.reference) for e in evalset.examples if e.reference is not None)
    if requested is None and not evalset.preference:
        return (
            ["exact_match", "token_f1", "rouge_l"]
            + ([] if remote else ["perplexity"])
            + (["field_accuracy"] if has_fields else [])
            + (["plan_judged"] if has_plans else [])
        )
    metrics = list(dict.fromkeys(PREFERENCE_METRICS if requested is None else requested))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise MetricError(f"Unknown metric {unknown[0]!r}. Choose from: {', '.join(METRICS)}.")
    if not metrics:
        raise MetricError("No metric chosen: pick at least one.")
    name = evalset.source.get("name", "the dataset")
    for metric in metrics:
        if remote and metric in LIKELIHOOD_METRICS + PREFERENCE_METRICS:
            raise MetricError(
                f"{metric} needs the log-likelihoods of reference answers, which an OpenAI-compatible endpoint does "
                "not return: evaluate a model on an endpoint with exact_match, token_f1, rouge_l, field_accuracy "
                "or plan_judged, or evaluate the adapter in this console for perplexity and preference accuracy."
            )
        if metric in PREFERENCE_METRICS and not evalset.preference:
            raise MetricError(
                f"{metric} needs DPO preference pairs (prompt, chosen, rejected); {name!r} holds prompts with "
                "reference answers. Choose exact_match, token_f1, rouge_l or perplexity."
            )
        if metric not in PREFERENCE_METRICS and evalset.preference:
            raise MetricError(
                f"{metric} needs reference answers; {name!r} holds preference pairs. Choose preference_accuracy, "
                "or a dataset with prompt and reference."
            )
        if metric == "plan_judged" and not has_plans:
            raise MetricError(
                f"plan_judged needs campaign plans as references (Channel / Budget / Expected ROAS uplift lines); "
                f"{name!r} has none. Generate the planning dataset from the uplift priors."
            )
        if metric == "field_accuracy" and not has_fields:
            raise MetricError(
                f"field_accuracy needs a mapping set (each reference is 'rmis_field: value' or the record names its "
                f"field in 'task'); {name!r} has none. Generate the retailer dataset from a mapping."
            )
    return metrics


def score_batch(
    spec: TargetSpec,
    examples: Sequence[Example],
    metrics: Sequence[str],
    settings: GenerationSettings,
    engine: InferenceEngine,
) -> list[dict[str, Any]]:
    """The scored rows of one batch of examples."""
    rows: list[dict[str, Any]] = [{"index": e.index, "prompt": e.prompt} for e in examples]
    if any(m in GENERATION_METRICS for m in metrics):
        answers = generate(spec, examples, settings, engine)
        for row, example, answer in zip(rows, examples, answers, strict=True):
            reference = example.reference or ""
            row.update(
                reference=reference,
                prediction=answer.response,
                exact_match=exact_match(answer.response, reference),
                token_f1=round(token_f1(answer.response, reference), 6),
                rouge_l=round(rouge_l(answer.response, reference), 6),
                field=field_of(reference, example.task),
                plan=judge(answer.response, reference).criteria if is_plan(reference) else None,
                tokens=answer.tokens,
                latency_ms=answer.latency_ms,
                first_token_ms=answer.first_token_ms,
                adapters_used=answer.adapters_used,
            )
    if "perplexity" in metrics:
        scores = loglikelihoods(spec, [(e, e.reference or "") for e in examples], engine)
        for row, example, (logprob, count) in zip(rows, examples, scores, strict=True):
            row.setdefault("reference", example.reference)
            row.update(reference_logprob=round(logprob, 6), reference_tokens=count)
    if "preference_accuracy" in metrics:
        chosen = loglikelihoods(spec, [(e, e.chosen or "") for e in examples], engine)
        rejected = loglikelihoods(spec, [(e, e.rejected or "") for e in examples], engine)
        for row, example, (good, _), (bad, _) in zip(rows, examples, chosen, rejected, strict=True):
            row.update(
                chosen=example.chosen,
                rejected=example.rejected,
                chosen_logprob=round(good, 6),
                rejected_logprob=round(bad, 6),
                preferred=preference_correct(good, bad),
            )
    return rows


MAX_CONCURRENT_REQUESTS = 16


def remote_answers(spec: TargetSpec, examples: Sequence[Example], settings: GenerationSettings) -> list[Answer]:
    """Each example's conversation as one streamed chat completion on the target's endpoint; a batch's requests
    go at once (at most MAX_CONCURRENT_REQUESTS) over one keep-alive connection pool."""
    assert spec.endpoint is not None, "an endpoint target names its endpoint"
    endpoint = spec.endpoint

    def answer(example: Example, client: httpx.Client) -> Answer:
        stream = RemoteStream(endpoint, spec.ref, example.conversation, settings, client)
        for _ in stream:
            pass
        assert stream.answer is not None, "a finished stream has its answer"
        return Answer(
            response=stream.answer.text,
            tokens=stream.answer.completion_tokens,
            latency_ms=stream.answer.latency_ms,
            first_token_ms=stream.answer.first_token_ms,
            adapters_used=[],
        )

    workers = max(1, min(len(examples), MAX_CONCURRENT_REQUESTS))
    with httpx.Client() as client, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval-remote") as pool:
        return list(pool.map(lambda example: answer(example, client), examples))


def _activations(spec: TargetSpec, examples: Sequence[Example]) -> list[tuple[Activation, list[str]]] | None:
    """Each example's activation and the adapters it uses; None when the federation's method has no single
    activation per prompt (a sequential chain answers one prompt at a time)."""
    if spec.kind == "base":
        return [(Activation(), [])] * len(examples)
    if spec.kind == "adapter":
        member = member_of(spec)
        return [(Activation(members=(member,), scales=(1.0,)), [member.label])] * len(examples)
    federation = federation_of(spec)
    method = method_of(federation.method)
    found = [method.activation(federation, example.prompt) for example in examples]
    return None if any(item is None for item in found) else found


def _groups(activations: list[tuple[Activation, list[str]]]) -> dict[tuple, list[int]]:
    """Example positions that share one activation, so each group is one batch."""
    groups: dict[tuple, list[int]] = {}
    for position, (activation, _) in enumerate(activations):
        key = (
            activation.federation.id if activation.federation else None,
            tuple(m.key for m in activation.members),
            activation.scales,
        )
        groups.setdefault(key, []).append(position)
    return groups


def generate(
    spec: TargetSpec, examples: Sequence[Example], settings: GenerationSettings, engine: InferenceEngine
) -> list[Answer]:
    if spec.kind == "endpoint":
        return remote_answers(spec, examples, settings)
    activations = _activations(spec, examples)
    if activations is None:
        federation = federation_of(spec)
        answers = []
        for example in examples:
            result = run_federation(federation, example.prompt, settings, engine, caller="evaluation")
            answers.append(
                Answer(
                    response=result.response,
                    tokens=result.tokens,
                    latency_ms=result.latency_ms,
                    first_token_ms=result.first_token_ms,
                    adapters_used=result.adapters_used,
                )
            )
        return answers
    out: list[Answer | None] = [None] * len(examples)
    for positions in _groups(activations).values():
        activation, used = activations[positions[0]]
        generations = engine.generate_batch(
            spec.base,
            [examples[p].conversation for p in positions],
            settings,
            activation,
            caller="evaluation",
            target=spec.label,
        )
        for position, generation in zip(positions, generations, strict=True):
            out[position] = Answer(
                response=generation.response,
                tokens=generation.tokens,
                latency_ms=generation.latency_ms,
                first_token_ms=generation.first_token_ms,
                adapters_used=used,
            )
    return [answer for answer in out if answer is not None]


def loglikelihoods(
    spec: TargetSpec, pairs: Sequence[tuple[Example, str]], engine: InferenceEngine
) -> list[tuple[float, int]]:
    activations = _activations(spec, [example for example, _ in pairs])
    if activations is None:
        raise MetricError(
            "Log-likelihood metrics (perplexity, preference accuracy) are not defined for a sequential "
            "federation: its answer comes from a chain of prompts. Evaluate its stages' adapters instead."
        )
    out: list[tuple[float, int] | None] = [None] * len(pairs)
    for positions in _groups(activations).values():
        scores = engine.loglikelihoods(
            spec.base, [(pairs[p][0].conversation, pairs[p][1]) for p in positions], activations[positions[0]][0]
        )
        for position, score in zip(positions, scores, strict=True):
            out[position] = score
    return [score for score in out if score is not None]


def summarize(rows: Sequence[dict[str, Any]], metrics: Sequence[str], seconds: float) -> dict[str, Any]:
    """A run's metrics from its rows: means of the per-example scores, perplexity over all reference tokens,
    accuracy per RMIS field, latency percentiles and generated tokens per second of run time."""
    from evaluation.metrics import percentile, perplexity

    count = len(rows)
    summary: dict[str, Any] = {"examples": count}
    if not count:
        return summary
    for metric in ("exact_match", "token_f1", "rouge_l"):
        if metric in metrics:
            summary[metric] = sum(float(row[metric]) for row in rows) / count
    if "field_accuracy" in metrics:
        fields: dict[str, list[bool]] = {}
        for row in rows:
            if row.get("field"):
                fields.setdefault(row["field"], []).append(bool(row["exact_match"]))
        summary["field_accuracy"] = {
            field: {"accuracy": sum(hits) / len(hits), "examples": len(hits)} for field, hits in sorted(fields.items())
        }
    if "plan_judged" in metrics:
        plans = [row["plan"] for row in rows if row.get("plan")]
        summary["plan_pass"] = sum(all(plan.values()) for plan in plans) / len(plans) if plans else None
        summary.update({f"plan_{name}": rate for name, rate in criteria_rates(plans).items()})
    if "perplexity" in metrics:
        summary["perplexity"] = perplexity(
            [row["reference_logprob"] for row in rows], [row["reference_tokens"] for row in rows]
        )
    if "preference_accuracy" in metrics:
        summary["preference_accuracy"] = sum(bool(row["preferred"]) for row in rows) / count
    latencies = [row["latency_ms"] for row in rows if "latency_ms" in row]
    if latencies:
        tokens = sum(int(row.get("tokens", 0)) for row in rows)
        summary.update(
            latency_p50_ms=round(percentile(latencies, 0.5), 2),
            latency_p95_ms=round(percentile(latencies, 0.95), 2),
            generated_tokens=tokens,
            tokens_per_second=round(tokens / seconds, 2) if seconds > 0 else None,
        )
    return summary
