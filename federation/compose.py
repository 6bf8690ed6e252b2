"""Composing a federation: resolve the adapters, refuse what PEFT would silently get wrong, train a router.

PEFT's `add_weighted_adapter` does not complain when adapters were trained on another base model, when they use
rsLoRA (the composed adapter gets alpha = r, which rsLoRA scales by 1/sqrt(r)) or DoRA (magnitude vectors are not
combined), or when the composed name already exists (it returns and keeps the old weights). Each of these is
checked here, with the reason, before anything is loaded.
"""

import json
import math
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from federation.errors import FederationError
from federation.methods import method_of
from federation.spec import CHAIN_TEMPLATE, DEFAULT_TEMPLATE, EXACT_COMBINATION, BaseRef, Federation, Member
from registry.errors import NotFound
from training.adapters import AdapterRecord, get_adapter
from training.base_models import describe_folder, fingerprint, resolve_base_model
from training.errors import BaseModelError

MAX_MEMBERS = 8
NUMBERS = {2: "two", 3: "three", 4: "four"}


class MemberRequest(BaseModel):
    """One adapter as the form or the API names it; version None means the latest."""

    model_config = ConfigDict(frozen=True)

    adapter: str
    version: int | None = None
    role: str = "adapter"
    weight: float = 1.0
    template: str | None = None


def default_federation_name(adapters: Sequence[str], method: str) -> str:
    """The name of a federation composed without one: its adapters and its method ("walk_a + walk_b (gated)")."""
    return f"{' + '.join(adapters)} ({method})"


def new_federation_id(now: datetime | None = None) -> str:
    return f"fed_{(now or datetime.now(UTC)):%Y%m%d_%H%M%S}_{secrets.token_hex(2)}"


def compose(
    requests: Sequence[MemberRequest],
    *,
    method: str = "additive",
    base_model: str | None = None,
    combination: str = EXACT_COMBINATION,
    merged: bool = False,
    routing: str = "top",
    name: str | None = None,
) -> Federation:
    """A validated (unsaved) federation; gated ones come with their router trained."""
    composition = method_of(method)
    if not requests:
        raise FederationError("Choose at least one adapter to compose.")
    if len(requests) > MAX_MEMBERS:
        raise FederationError(f"A federation holds at most {MAX_MEMBERS} adapters; {len(requests)} were chosen.")
    if len(requests) < composition.min_members:
        raise FederationError(
            f"A {method} federation needs at least {NUMBERS.get(composition.min_members, composition.min_members)} "
            "adapters "
            "(over one adapter it is just that adapter)."
        )
    records = [_adapter(r) for r in requests]
    labels = [r.label for r in records]
    if len(set(labels)) != len(labels):
        raise FederationError(f"{_first_duplicate(labels)} is chosen twice; each adapter version may appear once.")
    for request in requests:
        if not math.isfinite(request.weight):
            raise FederationError(f"The weight of {request.adapter} is {request.weight}; use a finite number.")
    base = _common_base(records, base_model)
    for record in records:
        _check_plain_lora(record)
    members = [
        Member(
            adapter=record.name,
            version=record.version,
            role=request.role,
            weight=float(request.weight),
            rank=record.lora_r,
            alpha=record.lora_alpha,
            size_bytes=record.size_bytes,
            target_modules=record.target_modules,
            template=request.template or (DEFAULT_TEMPLATE if index == 0 else CHAIN_TEMPLATE),
        )
        for index, (record, request) in enumerate(zip(records, requests, strict=True))
    ]
    settled = composition.settle(records, members, combination=combination, merged=merged, routing=routing)
    return Federation(
        id=new_federation_id(),
        name=(name or "").strip() or default_federation_name([m.adapter for m in members], method),
        created=datetime.now(UTC),
        base=base,
        method=method,
        members=members,
        **settled,
    )


def _adapter(request: MemberRequest) -> AdapterRecord:
    try:
        return get_adapter(request.adapter, request.version)
    except NotFound as error:
        raise FederationError(f"{error} Pick adapters from the registry list.") from None


def _first_duplicate(labels: list[str]) -> str:
    return next(label for label in labels if labels.count(label) > 1)


def _common_base(records: list[AdapterRecord], base_model: str | None) -> BaseRef:
    """The one base model all adapters were trained on, still holding the same weights (same fingerprint)."""
    recorded = {r.base_model.get("fingerprint") for r in records}
    if base_model is None and len(recorded) > 1:
        names = ", ".join(f"{r.label} ({r.base_model.get('id')})" for r in records)
        raise FederationError(
            f"The adapters were trained on different base models ({names}); a federation needs "
            "adapters of one base model."
        )
    try:
        info = (
            resolve_base_model(base_model)
            if base_model is not None
            else describe_folder(_path(records[0]), records[0].base_model.get("id", "base"), "local")
        )
    except BaseModelError as error:
        raise FederationError(f"The base model cannot be used: {error}") from None
    for record in records:
        if record.base_model.get("fingerprint") != info.fingerprint:
            raise FederationError(
                f"{record.label} was trained on {record.base_model.get('id')} (fingerprint "
                f"{str(record.base_model.get('fingerprint'))[:12]}), not on {info.id} ({info.fingerprint[:12]}). "
                "Its low-rank delta only makes sense on the weights it was trained on: choose that base model or "
                "retrain the adapter."
            )
    return BaseRef.from_info(info)


def _path(record: AdapterRecord) -> Path:
    path = Path(str(record.base_model.get("path", "")))
    if not path.is_dir() or fingerprint(path) != record.base_model.get("fingerprint"):
        raise FederationError(
            f"The base model {record.base_model.get('id')} that {record.label} was trained on is no "
            f"longer at {path} with the same weights. Give the base model explicitly."
        )
    return path


def _check_plain_lora(record: AdapterRecord) -> None:
    config_file = record.path / "adapter_config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise FederationError(f"{record.label} has no readable adapter_config.json; retrain or re-import it.") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise FederationError(
            f"{record.label} is a {config.get('peft_type')} adapter; federations compose LoRA adapters."
        )
    if config.get("use_dora"):
        raise FederationError(
            f"{record.label} is a DoRA adapter: its magnitude vectors cannot be summed with other "
            "adapters, and PEFT would drop them silently. Use plain LoRA adapters."
        )
    if config.get("use_rslora"):
        raise FederationError(
            f"{record.label} uses rsLoRA (scale alpha/sqrt(r)); PEFT's composition rescales it as "
            "if it were alpha/r, so the sum would be wrong. Use adapters trained without rsLoRA."
        )
    if config.get("modules_to_save"):
        raise FederationError(
            f"{record.label} also trains whole modules ({', '.join(config['modules_to_save'])}), "
            "which cannot be summed with another adapter's."
        )
