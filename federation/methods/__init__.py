"""Composition methods, one module each (additive, gated, sequential) behind `CompositionMethod`.

`METHODS` is the dispatcher: compose, run, the spec and the pages ask the method, never test its name.
"""

from federation.errors import FederationError
from federation.methods.additive import Additive
from federation.methods.base import CompositionMethod
from federation.methods.gated import Gated
from federation.methods.sequential import Sequential

METHODS: dict[str, CompositionMethod] = {method.name: method for method in (Additive(), Gated(), Sequential())}
METHOD_HELP: dict[str, str] = {name: method.help for name, method in METHODS.items()}


def method_of(name: str) -> CompositionMethod:
    if name not in METHODS:
        raise FederationError(f"Unknown composition method {name!r}. Choose one of: {', '.join(METHODS)}.")
    return METHODS[name]


__all__ = ["METHODS", "METHOD_HELP", "CompositionMethod", "method_of"]
