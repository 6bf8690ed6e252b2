"""Playground: one prompt on a base model, an adapter version or a saved federation, and the history.

Every run is one JSON line in `<registry>/playground/history.jsonl`, appended under the registry's lock, so
several browser sessions can run prompts at once without losing or interleaving a line. The target is resolved
before anything is generated, so a missing adapter or base model is a readable error, not a broken stream.
"""

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from federation.engine import (
    Activation,
    Generation,
    GenerationSettings,
    GenerationStream,
    InferenceEngine,
    default_engine,
)
from federation.run import FederationResult, FederationStream, stream_federation
from federation.spec import BaseRef, Member
from federation.store import load_federation
from registry.access import Role, requires
from registry.errors import ConsoleError
from registry.layout import Registry, open_registry
from registry.storage import append_line, locked
from training.adapters import get_adapter
from training.base_models import resolve_base_model

HISTORY_FILE = "history.jsonl"
# Shared by the Playground's templates and the Federation page's sample prompts: the three adapter kinds of the
# product (retailer mapping, campaign planning, creative policy) plus a blank prompt.
PROMPT_TEMPLATES: dict[str, str] = {
    "Mapping": "Map field 'adType' with value 'sp' from Amazon to RMIS.",
    "Planning": "Plan a $50,000 campaign for Snacks on Walmart. Which placements get the budget?\n\n"
    "ROAS uplift priors (mean, interval):\nsearch_banner: +0.25 (+0.15 to +0.35)\n"
    "sponsored_product: +0.25 (+0.17 to +0.33)\noffsite_display: +0.16 (+0.01 to +0.31)\n"
    "onsite_display: +0.12 (-0.01 to +0.26)\nvideo: +0.10 (-0.12 to +0.33)",
    "Creative policy": 'Is this creative compliant? "Clinically proven to cure hunger: the only snack doctors trust."',
    "Free": "",
}
# The example each adapter type answers: a mapping prompt to a planning adapter reads as if the adapter were broken.
TEMPLATE_FOR_TYPE: dict[str, str] = {"retailer": "Mapping", "task": "Planning", "policy": "Creative policy"}

TargetKind = Literal["base", "adapter", "federation"]


class Target(BaseModel):
    """What answers a run: a base model (id or folder), an adapter version, or a saved federation (its id)."""

    model_config = ConfigDict(frozen=True)

    kind: TargetKind
    ref: str
    version: int | None = None


class RunMetrics(BaseModel):
    """What a run cost; load time (model and adapters into memory) is kept apart from generation latency."""

    tokens: int
    latency_ms: float
    load_ms: float
    first_token_ms: float | None = None
    adapters_used: list[str] = Field(default_factory=list)


class HistoryEntry(BaseModel):
    """One saved run: enough to show it again and to put its prompt and settings back into the form."""

    id: str
    time: datetime
    target: Target
    label: str = Field(description="The target as shown, e.g. 'amazon_v1 v2 (adapter)'.")
    prompt: str
    settings: GenerationSettings
    response: str
    metrics: RunMetrics


class PlaygroundRun:
    """Iterate for the answer's text as it is generated; after the last chunk the run is saved as `.entry`."""

    def __init__(
        self,
        target: Target,
        label: str,
        prompt: str,
        settings: GenerationSettings,
        stream: GenerationStream | FederationStream,
        adapters: list[str],
        registry: Registry,
    ):
        self.target, self.label, self.prompt, self.settings = target, label, prompt, settings
        self._stream, self._adapters, self._registry = stream, adapters, registry
        self.entry: HistoryEntry | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._stream
        result: Generation | FederationResult | None = self._stream.result
        assert result is not None, "a finished stream always has its result"
        used = result.adapters_used if isinstance(result, FederationResult) else self._adapters
        self.entry = append_history(
            HistoryEntry(
                id=uuid.uuid4().hex[:12],
                time=datetime.now(UTC),
                target=self.target,
                label=self.label,
                prompt=self.prompt,
                settings=self.settings,
                response=result.response,
                metrics=RunMetrics(
                    tokens=result.tokens,
                    latency_ms=result.latency_ms,
                    load_ms=result.load_ms,
                    first_token_ms=result.first_token_ms,
                    adapters_used=used,
                ),
            ),
            self._registry,
        )


def start_run(
    target: Target,
    prompt: str,
    settings: GenerationSettings | None = None,
    engine: InferenceEngine | None = None,
    registry: Registry | None = None,
) -> PlaygroundRun:
    """Resolve the target and start generating; nothing is loaded or saved until the run is iterated."""
    if not prompt.strip():
        raise ConsoleError("The prompt is empty: pick a template or type what the model should answer.")
    registry = registry or open_registry()
    settings = settings or GenerationSettings()
    label, stream, adapters = open_stream(target, prompt, settings, engine, registry)
    return PlaygroundRun(target, label, prompt, settings, stream, adapters, registry)


def open_stream(
    target: Target,
    prompt: str,
    settings: GenerationSettings,
    engine: InferenceEngine | None = None,
    registry: Registry | None = None,
    caller: str = "playground",
    history: Sequence[dict[str, str]] = (),
) -> tuple[str, GenerationStream | FederationStream, list[str]]:
    """The target's label, an unstarted stream of its answer, and the adapters it uses (a federation reports
    its own on `.result`): the one way a target is turned into generation, for the Playground and the API.
    `history`: a chat's earlier user/assistant turns, before `prompt` (the last user turn)."""
    registry = registry or open_registry()
    engine = engine or default_engine()
    if target.kind == "federation":
        federation = load_federation(target.ref, registry)
        return (
            f"{federation.name} ({federation.id})",
            stream_federation(federation, prompt, settings, engine, caller, history),
            [],
        )
    if target.kind == "adapter":
        record = get_adapter(target.ref, target.version, registry)
        member = Member(
            adapter=record.name,
            version=record.version,
            role=record.adapter_type,
            rank=record.lora_r,
            alpha=record.lora_alpha,
            size_bytes=record.size_bytes,
            target_modules=record.target_modules,
        )
        base = BaseRef.model_validate(record.base_model)
        stream = engine.stream(
            base,
            prompt,
            settings,
            Activation(members=(member,), scales=(1.0,)),
            caller=caller,
            target=record.label,
            history=history,
        )
        return f"{record.label} (adapter)", stream, [record.label]
    info = resolve_base_model(target.ref)
    stream = engine.stream(BaseRef.from_info(info), prompt, settings, caller=caller, history=history)
    return f"{info.id} (base)", stream, []


def _history_file(registry: Registry) -> Path:
    return registry.playground / HISTORY_FILE


def append_history(entry: HistoryEntry, registry: Registry | None = None) -> HistoryEntry:
    registry = registry or open_registry()
    with locked(registry.locks, "playground"):
        append_line(_history_file(registry), entry.model_dump_json())
    return entry


def list_history(search: str = "", registry: Registry | None = None) -> list[HistoryEntry]:
    """Newest first, filtered by `search` in the prompt, the answer or the target; an unreadable line is skipped."""
    registry = registry or open_registry()
    path = _history_file(registry)
    if not path.is_file():
        return []
    needle = search.strip().casefold()
    entries = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = HistoryEntry.model_validate_json(line)
            except ValidationError:
                continue
            if not needle or needle in f"{entry.label}\n{entry.prompt}\n{entry.response}".casefold():
                entries.append(entry)
    return entries[::-1]


@requires(Role.PRACTITIONER, "playground.clear_history")
def clear_history(registry: Registry | None = None) -> int:
    """Delete every saved run; returns how many there were."""
    registry = registry or open_registry()
    with locked(registry.locks, "playground"):
        path = _history_file(registry)
        if not path.is_file():
            return 0
        with open(path, encoding="utf-8") as handle:
            count = sum(1 for line in handle if line.strip())
        path.unlink()
    return count
