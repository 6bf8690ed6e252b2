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

from federation.router import RouterError, train_router, training_prompts
from federation.spec import (
    APPROXIMATIONS,
    CHAIN_TEMPLATE,
    DEFAULT_TEMPLATE,
    EXACT_COMBINATION,
    METHOD_HELP,
    BaseRef,
    Federation,
    Member,
    RouterSpec,
)
from registry.errors import ConsoleError, NotFound
from training.adapters import AdapterRecord, get_adapter
from training.base_models import BaseModelError, describe_folder, fingerprint, resolve_base_model

EQUAL_RANK_COMBINATIONS = {"linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"}
MAX_MEMBERS = 8


class FederationError(ConsoleError):
    """A composition that cannot be built as asked; the message says which adapter or setting to change."""


class MemberRequest(BaseModel):
    """One adapter as the form or the API names it; version None means the latest."""

    model_config = ConfigDict(frozen=True)

    adapter: str
    version: int | None = None
    role: str = "adapter"
    weight: float = 1.0
    template: str | None = None


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
    if method not in METHOD_HELP:
        raise FederationError(f"Unknown composition method {method!r}. Choose one of: {', '.join(METHOD_HELP)}.")
    if not requests:
        raise FederationError("Choose at least one adapter to compose.")
    if len(requests) > MAX_MEMBERS:
        raise FederationError(f"A federation holds at most {MAX_MEMBERS} adapters; {len(requests)} were chosen.")
    if method in ("gated", "sequential") and len(requests) < 2:
        raise FederationError(
            f"A {method} federation needs at least two adapters (a {'router' if method == 'gated' else 'chain'} "
            "over one adapter is just that adapter)."
        )
    if routing not in ("top", "weighted"):
        raise FederationError(
            f"Unknown routing {routing!r}: use 'top' (the router's first choice answers) or 'weighted'."
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
    if method == "additive":
        _check_combination(combination, records)
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
    for member in members:
        if method == "sequential" and "{" in member.template:
            _check_template(member)
    router = _router(records) if method == "gated" else None
    return Federation(
        id=new_federation_id(),
        name=(name or "").strip() or f"{' + '.join(m.adapter for m in members)} ({method})",
        created=datetime.now(UTC),
        base=base,
        method=method,
        members=members,
        combination=combination if method == "additive" else EXACT_COMBINATION,
        merged=merged and method == "additive",
        routing=routing,
        router=router,
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


def _check_combination(combination: str, records: list[AdapterRecord]) -> None:
    if combination != EXACT_COMBINATION and combination not in APPROXIMATIONS:
        raise FederationError(
            f"Unknown additive combination {combination!r}. Use 'cat' (exact) or one of the named "
            f"approximations: {', '.join(APPROXIMATIONS)}."
        )
    ranks = {r.lora_r for r in records}
    if combination in EQUAL_RANK_COMBINATIONS and len(ranks) > 1:
        raise FederationError(
            f"The {combination!r} approximation needs adapters of one rank; these have ranks "
            f"{', '.join(str(r) for r in sorted(ranks))}. Use 'cat', which is exact for any ranks."
        )


def _check_template(member: Member) -> None:
    try:
        member.template.format(input="", previous="")
    except (KeyError, IndexError, ValueError) as error:
        raise FederationError(
            f"The prompt template of {member.label} is invalid ({error}); use {{input}} for the "
            "request and {previous} for the previous stage's output."
        ) from None


def _router(records: list[AdapterRecord]) -> RouterSpec:
    prompts = [training_prompts(record.dataset) for record in records]
    for record, texts in zip(records, prompts, strict=True):
        if not texts:
            raise RouterError(f"{record.label}'s training dataset has no prompts, so the router cannot learn it.")
    router, accuracy, held_out = train_router(prompts)
    return RouterSpec(
        features=router.weight.shape[1],
        weights=router.to_base64(),
        train_examples={r.label: len(p) for r, p in zip(records, prompts, strict=True)},
        holdout_accuracy=accuracy,
        holdout_examples=held_out,
    )
