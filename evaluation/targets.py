"""What an evaluation scores: a base model, an adapter version or a saved federation, resolved before anything runs.

A target is named the way the Python API names it: None (the embedded model), a base model name or folder, an
adapter name ("amazon_v1", "amazon_v1@v2") or a saved federation id ("fed_20261201_184413_ab12"). Resolution checks
that the base model's weights are still the ones the adapters were trained on, so a stale target is refused with
the reason instead of failing half-way through a run.
"""

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from federation.spec import BaseRef, Federation, Member
from federation.store import load_federation
from registry.errors import ConsoleError, NotFound
from training.adapters import get_adapter
from training.base_models import BaseModelError, fingerprint, resolve_base_model

TargetKind = Literal["base", "adapter", "federation"]
_FEDERATION_ID = re.compile(r"^fed_\d{8}_\d{6}_[0-9a-f]{4}$")


class TargetError(ConsoleError):
    """A target that cannot be evaluated: unknown, of another base model, or whose base weights changed."""


class TargetSpec(BaseModel):
    """A resolved target, stored in the run's config: enough to find it again and to label it."""

    model_config = ConfigDict(frozen=True)

    kind: TargetKind
    ref: str
    version: int | None = None
    label: str
    base: BaseRef

    @property
    def key(self) -> str:
        """The name the API accepts back: the base id, 'adapter@vN' or the federation id."""
        return f"{self.ref}@v{self.version}" if self.kind == "adapter" else self.ref


def resolve_target(target: str | None) -> TargetSpec:
    text = (target or "").strip()
    if _FEDERATION_ID.match(text):
        federation = load_federation(text)
        _check_base(federation.base, f"federation {federation.name}")
        return TargetSpec(
            kind="federation", ref=federation.id, label=f"{federation.name} ({federation.method})", base=federation.base
        )
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
