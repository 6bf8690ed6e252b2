"""Answering a prompt with a federation: additive and gated pick the deltas, sequential chains the stages.

Every result says which adapters acted and how: gate weights for gated, each stage's prompt and output for
sequential, and the load time apart from the generation time.
"""

from collections.abc import Iterator
from functools import lru_cache

from pydantic import BaseModel, Field

from federation.engine import Activation, Generation, GenerationSettings, InferenceEngine, default_engine
from federation.router import Router
from federation.spec import Federation, Member

MIN_SHOWN_WEIGHT = 0.01


class Stage(BaseModel):
    """One link of a sequential chain: the prompt it was given and what it answered."""

    adapter: str
    prompt: str
    response: str
    tokens: int
    latency_ms: float


class FederationResult(BaseModel):
    """What `test_federation` returns (seed 001) and what the page shows."""

    federation_id: str
    method: str
    response: str
    tokens: int
    prompt_tokens: int = Field(default=0, description="Prompt tokens read, summed over a chain's stages.")
    latency_ms: float
    load_ms: float
    first_token_ms: float | None
    adapters_used: list[str]
    gate_weights: dict[str, float] | None = None
    stages: list[Stage] | None = None

    @property
    def ms_per_token(self) -> float:
        return self.latency_ms / self.tokens if self.tokens else 0.0


@lru_cache(maxsize=32)
def _router(federation_id: str, weights: str) -> Router:
    return Router.from_base64(weights)


def gate(federation: Federation, prompt: str) -> dict[str, float]:
    """The router's weight for each member on this prompt (they sum to 1)."""
    assert federation.router is not None, "a gated federation always carries its router"
    probabilities = _router(federation.id, federation.router.weights).probabilities([prompt])[0].tolist()
    return {m.label: round(p, 4) for m, p in zip(federation.members, probabilities, strict=True)}


def activation_for(federation: Federation, prompt: str) -> tuple[Activation, dict[str, float] | None]:
    """The deltas one request uses under an additive or gated federation, and the gate weights if gated."""
    if federation.method == "additive":
        return Activation(federation=federation), None
    weights = gate(federation, prompt)
    if federation.routing == "top":
        top = max(federation.members, key=lambda m: weights[m.label])
        return Activation(members=(top,), scales=(1.0,)), weights
    return Activation(
        members=tuple(federation.members), scales=tuple(weights[m.label] for m in federation.members)
    ), weights


def _used(activation: Activation) -> list[str]:
    if activation.federation is not None:
        return [m.label for m in activation.federation.members if m.weight != 0]
    return [m.label for m, s in zip(activation.members, activation.scales, strict=True) if s >= MIN_SHOWN_WEIGHT]


def stage_prompt(member: Member, request: str, previous: str) -> str:
    return member.template.format(input=request, previous=previous)


class FederationStream:
    """Iterate for the final answer's text as it is generated; `.result` holds the whole FederationResult after."""

    def __init__(self, federation: Federation, prompt: str, settings: GenerationSettings, engine: InferenceEngine):
        self.federation, self.prompt, self.settings, self.engine = federation, prompt, settings, engine
        self.result: FederationResult | None = None

    def __iter__(self) -> Iterator[str]:
        federation = self.federation
        if federation.method == "sequential":
            yield from self._chain()
            return
        activation, weights = activation_for(federation, self.prompt)
        stream = self.engine.stream(federation.base, self.prompt, self.settings, activation)
        yield from stream
        self.result = self._result(stream.result, _used(activation), gate_weights=weights)

    def _chain(self) -> Iterator[str]:
        stages: list[Stage] = []
        previous, load_ms, latency_ms, prompt_tokens = "", 0.0, 0.0, 0
        members = self.federation.members
        for index, member in enumerate(members):
            prompt = stage_prompt(member, self.prompt, previous)
            stream = self.engine.stream(
                self.federation.base, prompt, self.settings, Activation(members=(member,), scales=(1.0,))
            )
            if index == len(members) - 1:
                yield from stream
            else:
                for _ in stream:
                    pass
            generation = stream.result
            stages.append(
                Stage(
                    adapter=member.label,
                    prompt=prompt,
                    response=generation.response,
                    tokens=generation.tokens,
                    latency_ms=generation.latency_ms,
                )
            )
            previous = generation.response
            load_ms += generation.load_ms
            latency_ms += generation.latency_ms
            prompt_tokens += generation.prompt_tokens
        total = Generation(
            response=previous,
            tokens=sum(s.tokens for s in stages),
            prompt_tokens=prompt_tokens,
            latency_ms=round(latency_ms, 2),
            load_ms=round(load_ms, 2),
            first_token_ms=None,
        )
        self.result = self._result(total, [m.label for m in members], stages=stages)

    def _result(self, generation: Generation, used: list[str], **extra) -> FederationResult:
        return FederationResult(
            federation_id=self.federation.id,
            method=self.federation.method,
            response=generation.response,
            tokens=generation.tokens,
            prompt_tokens=generation.prompt_tokens,
            latency_ms=generation.latency_ms,
            load_ms=generation.load_ms,
            first_token_ms=generation.first_token_ms,
            adapters_used=used,
            **extra,
        )


def stream_federation(
    federation: Federation,
    prompt: str,
    settings: GenerationSettings | None = None,
    engine: InferenceEngine | None = None,
) -> FederationStream:
    return FederationStream(federation, prompt, settings or GenerationSettings(), engine or default_engine())


def run_federation(
    federation: Federation,
    prompt: str,
    settings: GenerationSettings | None = None,
    engine: InferenceEngine | None = None,
) -> FederationResult:
    stream = stream_federation(federation, prompt, settings, engine)
    for _ in stream:
        pass
    assert stream.result is not None
    return stream.result
