"""Serving by model name, the way OpenAI-compatible servers do: every base model, adapter version and saved
federation has one model id, and a completion runs the same Playground path (one engine, one model cache).

Model ids: a base model's id; an adapter's name (its latest version) or `name@v2`; a saved federation's id
(`fed_...`); and any alias a `load_lora_adapter` call gave an adapter version in this process.
"""

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from federation.engine import GenerationSettings, GenerationStream
from federation.run import FederationStream
from federation.store import list_federations
from registry.access import Role, requires
from registry.errors import ConsoleError, NotFound
from registry.layout import open_registry
from services.playground import Target, open_stream
from training.adapters import adapter_versions, get_adapter, list_adapters
from training.base_models import list_base_models

__all__ = [
    "CompletionStream",
    "ServedModel",
    "Usage",
    "list_served_models",
    "load_lora_adapter",
    "resolve_model",
    "stream_completion",
    "unload_lora_adapter",
]


class ServedModel(BaseModel):
    id: str
    kind: Literal["base", "adapter", "federation"]
    created: int
    parent: str | None = None
    name: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


_aliases: dict[str, Target] = {}
_aliases_lock = threading.Lock()


def list_served_models() -> list[ServedModel]:
    """Ready base models, then adapters (latest and every pinned version), then saved federations."""
    models = [
        ServedModel(id=b.id, kind="base", created=_mtime(b.path), name=b.id) for b in list_base_models() if b.ready
    ]
    for latest in list_adapters():
        parent = str(latest.base_model.get("id", "")) or None
        created = int(latest.created.timestamp())
        models.append(ServedModel(id=latest.name, kind="adapter", created=created, parent=parent, name=latest.label))
        for record in adapter_versions(latest.name):
            models.append(
                ServedModel(
                    id=f"{record.name}@v{record.version}",
                    kind="adapter",
                    created=int(record.created.timestamp()),
                    parent=parent,
                    name=record.label,
                )
            )
    with _aliases_lock:
        aliases = dict(_aliases)
    for alias, target in aliases.items():
        models.append(ServedModel(id=alias, kind=target.kind, created=0, name=f"{target.ref}@v{target.version}"))
    for federation in list_federations():
        models.append(
            ServedModel(
                id=federation.id,
                kind="federation",
                created=int(federation.created.timestamp()),
                parent=federation.base.id,
                name=federation.name,
            )
        )
    return models


def resolve_model(model: str) -> Target:
    """The target a model id names; an unknown id is a NotFound that says where the ids are listed."""
    model = (model or "").strip()
    with _aliases_lock:
        if model in _aliases:
            return _aliases[model]
    if model.startswith("fed_"):
        return Target(kind="federation", ref=model)
    if any(b.id == model and b.ready for b in list_base_models()):
        return Target(kind="base", ref=model)
    name, _, version = model.partition("@")
    digits = version.removeprefix("v")
    if version and not digits.isdigit():
        raise NotFound(f"Model {model!r}: the part after '@' must be an adapter version like v2.")
    try:
        record = get_adapter(name, int(digits) if version else None)
    except ConsoleError:
        raise NotFound(
            f"No model {model!r}. GET /v1/models lists the base models, adapters (name or name@vN) and saved "
            "federations (fed_...) this server answers with."
        ) from None
    return Target(kind="adapter", ref=record.name, version=record.version if version else None)


@requires(Role.PRACTITIONER, "serving.load_lora_adapter")
def load_lora_adapter(lora_name: str, lora_path: str) -> Target:
    """vLLM's `load_lora_adapter`: serve the registry adapter version at `lora_path` as model `lora_name`.

    Only folders of this registry's adapters are accepted (a path elsewhere could load anything)."""
    if not lora_name.strip():
        raise ConsoleError("lora_name is empty: give the model id clients will send.")
    folder = Path(lora_path).expanduser().resolve()
    adapters = open_registry().adapters.resolve()
    if not folder.is_relative_to(adapters) or len(folder.relative_to(adapters).parts) != 2:
        raise ConsoleError(
            f"{lora_path} is not an adapter version folder of this console's registry ({adapters}/<name>/v<N>)."
        )
    name, version = folder.parent.name, folder.name.removeprefix("v")
    if not version.isdigit():
        raise NotFound(f"{lora_path} is not an adapter version folder (they are named v1, v2, ...).")
    record = get_adapter(name, int(version))
    target = Target(kind="adapter", ref=record.name, version=record.version)
    with _aliases_lock:
        if lora_name in _aliases and _aliases[lora_name] != target:
            raise ConsoleError(f"{lora_name!r} already serves another adapter; unload it first.")
        _aliases[lora_name] = target
    return target


@requires(Role.PRACTITIONER, "serving.unload_lora_adapter")
def unload_lora_adapter(lora_name: str) -> None:
    with _aliases_lock:
        if _aliases.pop(lora_name, None) is None:
            raise NotFound(f"No adapter was loaded as {lora_name!r}.")


class CompletionStream:
    """Iterate for the answer's text; afterwards `usage` and `finish_reason` are set."""

    def __init__(
        self, model: str, label: str, settings: GenerationSettings, stream: GenerationStream | FederationStream
    ):
        self.model, self.label, self.settings, self._stream = model, label, settings, stream
        self.usage: Usage | None = None
        self.finish_reason: Literal["stop", "length"] | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._stream
        result = self._stream.result
        assert result is not None, "a finished stream always has its result"
        self.usage = Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.tokens,
            total_tokens=result.prompt_tokens + result.tokens,
        )
        self.finish_reason = "length" if result.tokens >= self.settings.max_new_tokens else "stop"


def stream_completion(
    model: str, prompt: str, settings: GenerationSettings, history: Sequence[dict[str, str]] = ()
) -> CompletionStream:
    """Resolve `model` and open its stream (nothing is loaded until iterated); bad names fail here, readably.
    `history`: a chat's earlier user/assistant turns; `prompt` is its last user turn."""
    if not prompt.strip():
        raise ConsoleError("The prompt is empty: send the text the model should answer.")
    label, stream, _ = open_stream(resolve_model(model), prompt, settings, caller="api", history=history)
    return CompletionStream(model, label, settings, stream)


def _mtime(path: Path) -> int:
    try:
        return int(path.stat().st_mtime)
    except OSError:
        return int(time.time())
