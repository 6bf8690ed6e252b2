"""Gated: a router trained on each adapter's own training prompts weighs the adapters per request."""

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from federation.errors import FederationError, RouterError
from federation.methods.base import CompositionMethod
from federation.router import Router, train_router, training_prompts
from federation.spec import RouterSpec

if TYPE_CHECKING:
    from federation.engine import Activation
    from federation.run import FederationStream
    from federation.spec import Federation, Member
    from training.adapters import AdapterRecord

ROUTINGS = ("top", "weighted")
# Gate weights below this are not listed among the adapters a gate-weighted answer used.
MIN_SHOWN_WEIGHT = 0.01


class Gated(CompositionMethod):
    name = "gated"
    help = (
        "A router trained on the adapters' own training prompts weighs the adapters per request; the answer "
        "comes from the top adapter (or the gate-weighted sum)."
    )
    min_members = 2
    options = frozenset({"routing"})

    def settle(
        self, records: Sequence["AdapterRecord"], members: Sequence["Member"], *, routing: str = "top", **options: Any
    ) -> dict[str, Any]:
        if routing not in ROUTINGS:
            raise FederationError(
                f"Unknown routing {routing!r}: use 'top' (the router's first choice answers) or 'weighted'."
            )
        return {"routing": routing, "router": _train(records)}

    def summary(self, federation: "Federation") -> str:
        return f"gated · routing {federation.routing} · {len(federation.members)} adapters"

    def answer(self, stream: "FederationStream") -> Iterator[str]:
        activation, weights = activation_for(stream.federation, stream.prompt)
        yield from stream.single_pass(activation, _used(activation), gate_weights=weights)

    def activation(self, federation: "Federation", prompt: str) -> tuple["Activation", list[str]]:
        activation, _ = activation_for(federation, prompt)
        return activation, _used(activation)


def _used(activation: "Activation") -> list[str]:
    return [m.label for m, s in zip(activation.members, activation.scales, strict=True) if s >= MIN_SHOWN_WEIGHT]


def gate(federation: "Federation", prompt: str) -> dict[str, float]:
    """The router's weight for each member on this prompt (they sum to 1)."""
    if federation.router is None:
        raise FederationError(f"{federation.name} is gated but carries no router; compose it again.")
    probabilities = _router(federation.id, federation.router.weights).probabilities([prompt])[0].tolist()
    return {m.label: round(p, 4) for m, p in zip(federation.members, probabilities, strict=True)}


def activation_for(federation: "Federation", prompt: str) -> tuple["Activation", dict[str, float]]:
    """The deltas one request uses: the top member, or every member scaled by its gate weight."""
    from federation.engine import Activation

    weights = gate(federation, prompt)
    if federation.routing == "top":
        top = max(federation.members, key=lambda m: weights[m.label])
        return Activation(members=(top,), scales=(1.0,)), weights
    members = tuple(federation.members)
    return Activation(members=members, scales=tuple(weights[m.label] for m in members)), weights


@lru_cache(maxsize=32)
def _router(federation_id: str, weights: str) -> Router:
    return Router.from_base64(weights)


def _train(records: Sequence["AdapterRecord"]) -> RouterSpec:
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
