"""Errors of composing and serving federations; each message says which adapter or setting to change."""

from registry.errors import ConsoleError


class FederationError(ConsoleError):
    """A composition that cannot be built as asked; the message says which adapter or setting to change."""


class RouterError(ConsoleError):
    """The router cannot be trained: an adapter without readable training prompts, or adapters trained on the same."""


class InferenceError(ConsoleError):
    """A request the engine cannot serve: a base model whose weights changed, an adapter that is gone."""


class PublishError(ConsoleError):
    """A package that cannot be built or verified as asked; the message says what to change."""


class PackageCorrupt(ConsoleError):
    """A package whose files no longer match its manifest."""
