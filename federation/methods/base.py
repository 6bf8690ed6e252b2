"""The interface every composition method implements: what it checks when composed, and how it answers."""

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from federation.engine import Activation
    from federation.run import FederationStream
    from federation.spec import Federation, Member
    from training.adapters import AdapterRecord


class CompositionMethod:
    """One way of composing adapters. A new method is one module with a subclass, listed in `METHODS`."""

    name: ClassVar[str]
    help: ClassVar[str]
    min_members: ClassVar[int] = 1
    # The compose options this method reads, so a form shows only those: weights, combination, merged,
    # routing, templates.
    options: ClassVar[frozenset[str]] = frozenset()

    def settle(self, records: Sequence["AdapterRecord"], members: Sequence["Member"], **options: Any) -> dict[str, Any]:
        """Check the members and options; return the Federation fields this method decides."""
        return {}

    def exact(self, federation: "Federation") -> bool:
        """Whether answers are exactly what the adapters compute (no merging heuristic in between)."""
        return True

    def rank(self, federation: "Federation") -> int:
        return max(m.rank for m in federation.members)

    def summary(self, federation: "Federation") -> str:
        """One line for the stack view."""
        return f"{self.name} · {len(federation.members)} adapters"

    def member_detail(self, member: "Member") -> str:
        """What the stack view adds to a member's box (its weight, its prompt)."""
        return ""

    def answer(self, stream: "FederationStream") -> Iterator[str]:
        """Yield the final answer's text as it is generated and set `stream.result`."""
        raise NotImplementedError

    def activation(self, federation: "Federation", prompt: str) -> tuple["Activation", list[str]] | None:
        """The one activation that answers `prompt` and the adapters it uses, so prompts that share it can be
        batched (evaluations); None when no single activation answers (a chain of prompts)."""
        return None
