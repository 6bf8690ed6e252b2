"""Additive: one delta, the weighted sum of the adapters' deltas, acting on every request."""

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from federation.errors import FederationError
from federation.methods.base import CompositionMethod
from federation.spec import APPROXIMATIONS, EXACT_COMBINATION

if TYPE_CHECKING:
    from federation.engine import Activation
    from federation.run import FederationStream
    from federation.spec import Federation, Member
    from training.adapters import AdapterRecord

# PEFT's heuristics that average factors element-wise, so every adapter must have the same rank.
EQUAL_RANK_COMBINATIONS = {"linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"}


class Additive(CompositionMethod):
    name = "additive"
    help = (
        "One model whose LoRA delta is the weighted sum of the adapters' deltas; every adapter acts on every request."
    )
    options = frozenset({"weights", "combination", "merged"})

    def settle(
        self,
        records: Sequence["AdapterRecord"],
        members: Sequence["Member"],
        *,
        combination: str = EXACT_COMBINATION,
        merged: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
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
        return {"combination": combination, "merged": bool(merged)}

    def exact(self, federation: "Federation") -> bool:
        return federation.combination == EXACT_COMBINATION

    def rank(self, federation: "Federation") -> int:
        """`cat` stacks the factors, so the ranks add up; the heuristics keep the largest."""
        ranks = [m.rank for m in federation.members]
        return sum(ranks) if self.exact(federation) else max(ranks)

    def summary(self, federation: "Federation") -> str:
        how = "cat (exact)" if self.exact(federation) else f"{federation.combination} (approximation)"
        merged = " · merged into the base" if federation.merged else ""
        return f"additive · {how} · rank {self.rank(federation)}{merged}"

    def member_detail(self, member: "Member") -> str:
        return f", weight {member.weight:g}"

    def answer(self, stream: "FederationStream") -> Iterator[str]:
        activation, used = self.activation(stream.federation, stream.prompt)
        yield from stream.single_pass(activation, used)

    def activation(self, federation: "Federation", prompt: str) -> tuple["Activation", list[str]]:
        from federation.engine import Activation

        return Activation(federation=federation), [m.label for m in federation.members if m.weight != 0]
