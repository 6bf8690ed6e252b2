"""What an evaluation scores: a base model, an adapter version or a saved federation, resolved before anything runs.

A target is named the way the Python API names it: None (the embedded model), a base model name or folder, an
adapter name ("amazon_v1", "amazon_v1@v2") or a saved federation id ("fed_20261201_184413_ab12"). Resolution checks
that the base model's weights are still the ones the adapters were trained on, so a stale target is refused with
the reason instead of failing half-way through a run.

A target can also be a model on an OpenAI-compatible endpoint (vLLM, SGLang, another console): a saved serving
endpoint's name or a server URL, plus the model id that server answers with. The run keeps the endpoint's URL and
the name of the environment variable holding its API key, never the key; the key must be set at submit.
"""

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from federation.remote import headers
from federation.spec import BaseRef, Federation, Member
from federation.store import load_federation
from registry.endpoints import ServingEndpoint, get_endpoint
from registry.errors import ConsoleError, NotFound
from training.adapters import get_adapter
from training.base_models import BaseModelError, fingerprint, resolve_base_model

TargetKind = Literal["base", "adapter", "federation", "endpoint"]
_FEDERATION_ID = re.compile(r"^fed_\d{8}_\d{6}_[0-9a-f]{4}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class TargetError(ConsoleError):
    """A target that cannot be evaluated: unknown, of another base model, or whose base weights changed."""


class TargetSpec(BaseModel):
    """A resolved target, stored in the run's config: enough to find it again and to label it."""

    model_config = ConfigDict(frozen=True)

    kind: TargetKind
    ref: str
    version: int | None = None
    label: str
    base: BaseRef | None = None
    endpoint: ServingEndpoint | None = None

    @property
    def key(self) -> str:
        """The base id, 'adapter@vN' or the federation id the API accepts back; 'endpoint:NAME/MODEL' for a model
        on an endpoint."""
        if self.kind == "endpoint" and self.endpoint is not None:
            return f"endpoint:{self.endpoint.name}/{self.ref}"
        return f"{self.ref}@v{self.version}" if self.kind == "adapter" else self.ref


def resolve_target(target: str | None) -> TargetSpec:
    text = (target or "").strip()
    if _FEDERATION_ID.match(text):
        federation = load_federation(text)
        _check_base(federation.base, f"federation {federation.name}")
        return TargetSpec(kind="federation", ref=federation.id, label=federation.label, base=federation.base)
    name, _, version = text.partition("@")
    if text and not text.startswith((".", "/", "~")):
        try:
            record = get_adapter(name, int(version.removeprefix("v")) if version else None)
        except (NotFound, ValueError):
            record = None
        if record is not None:
            base = BaseRef.model_validate(record.base_model)
            _check_base(base, f"adapter {record.label}")
            return TargetSpec(kind="adapter", ref=record.name, version=record.version, label=record.label, base=base)
    try:
        info = resolve_base_model(text or None)
    except BaseModelError as error:
        raise TargetError(
            f"{text!r} is not a saved federation id, an adapter in the registry or a base model: {error}"
        ) from None
    return TargetSpec(kind="base", ref=info.id, label=f"{info.id} (base)", base=BaseRef.from_info(info))


def resolve_endpoint_target(endpoint: str, model: str | None, api_key_env: str | None = None) -> TargetSpec:
    """`model` on `endpoint` (a saved serving endpoint's name, or a server URL such as http://gpu-box:8000);
    `api_key_env` names the environment variable holding the server's API key (a saved endpoint names its own)."""
    model = (model or "").strip()
    if not model:
        raise TargetError("Name the model the endpoint should answer with (its GET /v1/models lists them).")
    text = (endpoint or "").strip()
    if api_key_env is not None and not _ENV_NAME.match(api_key_env.strip()):
        raise TargetError(
            "api_key_env names an environment variable that holds the key (like VLLM_API_KEY), not the key "
            "itself: set the key in that variable where the console runs."
        )
    if "://" in text:
        try:
            parts = urlsplit(text)
            server = ServingEndpoint(
                name=re.sub(r"[^A-Za-z0-9_.-]", "-", parts.netloc) or "server",
                url=text,
                engine="vllm",
                api_key_env=(api_key_env or "").strip() or None,
            )
        except (ValidationError, ValueError):
            raise TargetError(
                f"{text!r} is not a server URL like http://gpu-box:8000 (http or https, without /v1)."
            ) from None
    else:
        server = get_endpoint(text)
        if api_key_env:
            server = server.model_copy(update={"api_key_env": api_key_env.strip()})
    headers(server)  # an unset key variable is refused now, not half-way through the run
    return TargetSpec(kind="endpoint", ref=model, label=f"{model} on {server.name} (endpoint)", endpoint=server)


def member_of(spec: TargetSpec) -> Member:
    """The adapter target as a one-member activation."""
    record = get_adapter(spec.ref, spec.version)
    return Member(
        adapter=record.name,
        version=record.version,
        role=record.adapter_type,
        rank=record.lora_r,
        alpha=record.lora_alpha,
        size_bytes=record.size_bytes,
        target_modules=record.target_modules,
    )


def federation_of(spec: TargetSpec) -> Federation:
    return load_federation(spec.ref)


def _check_base(base: BaseRef, what: str) -> None:
    path = Path(base.path)
    if not path.is_dir():
        raise TargetError(f"The base model of {what} ({base.id}) is no longer at {path}; restore it first.")
    if fingerprint(path) != base.fingerprint:
        raise TargetError(
            f"The {what} was trained on other weights than those now at {path} (fingerprint differs): it belongs "
            "to another base model. Evaluate it on its own base model or train it again."
        )
