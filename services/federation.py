"""Federation API: compose adapters over one base model, test them, save and load the result, and
compare two (or one and a model on a serving endpoint) on the same prompts."""

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from evaluation.targets import resolve_endpoint_target
from federation import store as _store
from federation.compose import MemberRequest, compose, default_federation_name
from federation.engine import GenerationSettings
from federation.errors import FederationError
from federation.evaluate import FederationScore, compare_federations
from federation.methods import METHOD_HELP, method_of
from federation.remote import EndpointModel
from federation.run import FederationResult, FederationStream, run_federation, stream_federation
from federation.spec import APPROXIMATIONS, EXACT_COMBINATION, Federation, Member
from federation.store import list_federations, load_federation
from registry.access import Role, requires
from training.adapters import get_adapter

__all__ = [
    "APPROXIMATIONS",
    "EXACT_COMBINATION",
    "METHOD_HELP",
    "EndpointModel",
    "Federation",
    "FederationError",
    "FederationResult",
    "FederationScore",
    "FederationStream",
    "GenerationSettings",
    "compare_federations",
    "compose_federation",
    "default_federation_name",
    "delete_federation",
    "endpoint_model",
    "list_federations",
    "federation_summary",
    "load_federation",
    "member_detail",
    "method_options",
    "save_federation",
    "stream_federation",
    "test_federation",
]


save_federation = requires(Role.PRACTITIONER, "federations.save")(_store.save_federation)
delete_federation = requires(Role.PRACTITIONER, "federations.delete")(_store.delete_federation)


@requires(Role.PRACTITIONER, "federations.compose")
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
    for label, value in (("adapters", adapters), ("weights", weights), ("templates", templates)):
        if value is not None and (isinstance(value, (str, bytes)) or not isinstance(value, Sequence)):
            raise FederationError(f"'{label}' must be a list (one entry per adapter), not {type(value).__name__}.")
    for label, value in (("name", name), ("method", method), ("combination", combination), ("routing", routing)):
        if value is not None and not isinstance(value, str):
            raise FederationError(f"'{label}' must be text, not {type(value).__name__}.")
    named = [(retailer_adapter, "retailer"), (task_adapter, "task")] + [(a, None) for a in adapters or ()]
    chosen = [(ref, role) for ref, role in named if ref]
    if weights is not None and len(weights) != len(chosen):
        raise FederationError(f"{len(weights)} weights for {len(chosen)} adapters: give one weight per adapter.")
    if templates is not None and len(templates) != len(chosen):
        raise FederationError(f"{len(templates)} templates for {len(chosen)} adapters: give one per adapter.")
    requests = []
    for index, (ref, role) in enumerate(chosen):
        adapter, version = _parse_ref(str(ref))
        weight = _weight(weights[index], adapter) if weights is not None else 1.0
        template = templates[index] if templates is not None else None
        if template is not None and not isinstance(template, str):
            raise FederationError(f"The template for {adapter} must be text with {{input}} / {{previous}}.")
        requests.append(
            MemberRequest(
                adapter=adapter,
                version=version,
                weight=weight,
                role=role or get_adapter(adapter, version).adapter_type,
                template=template,
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


def endpoint_model(endpoint: str, model: str, api_key_env: str | None = None) -> EndpointModel:
    """`model` on a serving endpoint (a saved endpoint's name or a server URL) as one side of an A/B, resolved and
    checked as an evaluation target is (a model is named, the URL is http(s), the key's variable is set)."""
    spec = resolve_endpoint_target(endpoint, model, api_key_env)
    assert spec.endpoint is not None, "an endpoint target names its endpoint"
    return EndpointModel(endpoint=spec.endpoint, model=spec.ref, label=spec.label)


def test_federation(federation: Federation | str, prompt: str, **settings: Any) -> FederationResult:
    """Answer `prompt` with a federation (or a saved one's id): response, latency_ms, tokens, adapters_used,
    gate_weights (gated) and stages (sequential). `settings` are GenerationSettings fields (max_new_tokens, ...)."""
    if isinstance(federation, str):
        federation = load_federation(federation)
    if not isinstance(prompt, str) or not prompt.strip():
        raise FederationError("The prompt is empty; type what the federation should answer.")
    return run_federation(federation, prompt, generation_settings(**settings))


def generation_settings(**settings: Any) -> GenerationSettings:
    """GenerationSettings from keyword arguments, every bad one explained (name, bound, what was given)."""
    try:
        return GenerationSettings(**settings)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, item['loc'])) or 'settings'}: {item['msg']} (got {item.get('input')!r})"
            for item in error.errors()
        )
        fields = ", ".join(GenerationSettings.model_fields)
        raise FederationError(f"Invalid generation settings: {problems}. Settings are: {fields}.") from None


def _weight(value: Any, adapter: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FederationError(f"The weight of {adapter} must be a number, not {type(value).__name__}.")
    try:
        return float(value)
    except ValueError:
        raise FederationError(f"The weight of {adapter} is {value!r}; give a number such as 0.5.") from None


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
