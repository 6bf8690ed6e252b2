"""Federation API (seed 001): compose adapters over one base model, test them, save and load the result."""

from collections.abc import Sequence
from typing import Any

from federation.compose import MemberRequest, compose
from federation.engine import GenerationSettings
from federation.errors import FederationError
from federation.evaluate import FederationScore, compare_federations
from federation.methods import METHOD_HELP, method_of
from federation.run import FederationResult, FederationStream, run_federation, stream_federation
from federation.spec import APPROXIMATIONS, EXACT_COMBINATION, Federation, Member
from federation.store import delete_federation, list_federations, load_federation, save_federation
from training.adapters import get_adapter

__all__ = [
    "APPROXIMATIONS",
    "EXACT_COMBINATION",
    "METHOD_HELP",
    "Federation",
    "FederationError",
    "FederationResult",
    "FederationScore",
    "FederationStream",
    "GenerationSettings",
    "compare_federations",
    "compose_federation",
    "delete_federation",
    "list_federations",
    "federation_summary",
    "load_federation",
    "member_detail",
    "method_options",
    "save_federation",
    "stream_federation",
    "test_federation",
]


def compose_federation(
    base_model: str | None = None,
    retailer_adapter: str | None = None,
    task_adapter: str | None = None,
    method: str = "additive",
    adapters: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
    *,
    name: str | None = None,
    combination: str = "cat",
    merged: bool = False,
    routing: str = "top",
    templates: Sequence[str | None] | None = None,
) -> Federation:
    """An unsaved federation of registry adapters ("name" or "name@v2"), in the order retailer, task, adapters.

    `weights` and `templates` (sequential prompts with {input} and {previous}) follow the same order.
    Unknown adapters, methods or impossible combinations raise FederationError and nothing is written.
    """
    named = [(retailer_adapter, "retailer"), (task_adapter, "task")] + [(a, None) for a in adapters or ()]
    chosen = [(ref, role) for ref, role in named if ref]
    if weights is not None and len(weights) != len(chosen):
        raise FederationError(f"{len(weights)} weights for {len(chosen)} adapters: give one weight per adapter.")
    if templates is not None and len(templates) != len(chosen):
        raise FederationError(f"{len(templates)} templates for {len(chosen)} adapters: give one per adapter.")
    requests = []
    for index, (ref, role) in enumerate(chosen):
        adapter, version = _parse_ref(str(ref))
        weight = float(weights[index]) if weights is not None else 1.0
        requests.append(
            MemberRequest(
                adapter=adapter,
                version=version,
                weight=weight,
                role=role or get_adapter(adapter, version).adapter_type,
                template=templates[index] if templates is not None else None,
            )
        )
    return compose(
        requests,
        method=method,
        base_model=base_model,
        combination=combination,
        merged=merged,
        routing=routing,
        name=name,
    )


def test_federation(federation: Federation | str, prompt: str, **settings: Any) -> FederationResult:
    """Answer `prompt` with a federation (or a saved one's id): response, latency_ms, tokens, adapters_used,
    gate_weights (gated) and stages (sequential). `settings` are GenerationSettings fields (max_new_tokens, ...)."""
    if isinstance(federation, str):
        federation = load_federation(federation)
    if not isinstance(prompt, str) or not prompt.strip():
        raise FederationError("The prompt is empty; type what the federation should answer.")
    return run_federation(federation, prompt, GenerationSettings(**settings))


def _parse_ref(ref: str) -> tuple[str, int | None]:
    """'amazon_v1' is the latest version; 'amazon_v1@v2' (or '@2') pins one."""
    name, _, version = ref.partition("@")
    if not version:
        return name, None
    digits = version.removeprefix("v")
    if not digits.isdigit():
        raise FederationError(f"{ref!r}: the part after '@' must be a version like v2.")
    return name, int(digits)


test_federation.__test__ = False  # a public API name, not a pytest test


def method_options(method: str) -> frozenset[str]:
    """The compose options a method reads (weights, combination, merged, routing, templates), for the form."""
    return method_of(method).options


def federation_summary(federation: Federation) -> str:
    """One line on how the federation composes its adapters, as its method describes it."""
    return method_of(federation.method).summary(federation)


def member_detail(federation: Federation, member: Member) -> str:
    """What the federation's method adds about one member (its weight, its stage prompt)."""
    return method_of(federation.method).member_detail(member)
