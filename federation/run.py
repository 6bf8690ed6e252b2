"""Answering a prompt with a federation: its method (federation.methods) decides which deltas act, and how.

Every result says which adapters acted and how: gate weights for gated, each stage's prompt and output for
sequential, and the load time apart from the generation time.
"""

from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import BaseModel, Field

from federation.engine import Activation, Generation, GenerationSettings, InferenceEngine, default_engine
from federation.methods import method_of
from federation.spec import Federation


class Stage(BaseModel):
    """One link of a sequential chain: the prompt it was given and what it answered."""

    adapter: str
    prompt: str
    response: str
    tokens: int
    latency_ms: float


class FederationResult(BaseModel):
    """What `test_federation` returns and what the page shows."""

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


class FederationStream:
    """Iterate for the final answer's text as it is generated; `.result` holds the whole FederationResult after."""

    def __init__(
        self,
        federation: Federation,
        prompt: str,
        settings: GenerationSettings,
        engine: InferenceEngine,
        caller: str = "federation",
        history: Sequence[dict[str, str]] = (),
    ):
        self.federation, self.prompt, self.settings, self.engine = federation, prompt, settings, engine
        self.caller = caller  # who asked, for the request log
        self.history = tuple(history)  # a chat's earlier turns; routing reads the last user turn (`prompt`)
        self.result: FederationResult | None = None

    def __iter__(self) -> Iterator[str]:
        yield from method_of(self.federation.method).answer(self)

    def single_pass(self, activation: Activation, used: list[str], **extra: Any) -> Iterator[str]:
        """One generation under `activation` (additive and gated answer this way)."""
        stream = self.engine.stream(
            self.federation.base,
            self.prompt,
            self.settings,
            activation,
            caller=self.caller,
            target=self.federation.id,
            history=self.history,
        )
        yield from stream
        self.finish(stream.result, used, **extra)

    def finish(self, generation: Generation, used: list[str], **extra: Any) -> None:
        self.result = FederationResult(
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
    caller: str = "federation",
    history: Sequence[dict[str, str]] = (),
) -> FederationStream:
    return FederationStream(
        federation, prompt, settings or GenerationSettings(), engine or default_engine(), caller, history
    )


def run_federation(
    federation: Federation,
    prompt: str,
    settings: GenerationSettings | None = None,
    engine: InferenceEngine | None = None,
    caller: str = "federation",
) -> FederationResult:
    stream = stream_federation(federation, prompt, settings, engine, caller)
    for _ in stream:
        pass
    assert stream.result is not None
    return stream.result
