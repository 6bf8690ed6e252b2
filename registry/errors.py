"""Errors whose message is written for the person using the console.

Pages show `str(error)` as is, so every message says what was wrong and what to do next.
"""

from pathlib import Path


class ConsoleError(Exception):
    """Base class: anything the user can fix by changing their input."""


class InvalidName(ConsoleError):
    """A registry name that could escape its folder or clash with the layout."""


class InvalidFile(ConsoleError):
    """An uploaded or referenced file that cannot be read as a dataset."""

    def __init__(self, message: str, *, line: int | None = None):
        self.line = line
        super().__init__(f"Line {line}: {message}" if line is not None else message)


class NotFound(ConsoleError):
    """A dataset, mapping or source that does not exist in the registry."""


class InvalidMapping(ConsoleError):
    """A mapping that cannot be parsed or whose transforms fail."""


class CorruptFile(ConsoleError):
    """A registry file that cannot be read. Lists skip it and name it, so one bad file breaks one item, not a page."""

    def __init__(self, path: Path, reason: str, fix: str | None = None):
        self.path = Path(path)
        self.reason = reason
        self.fix = fix or f"Repair it, or move it out of the registry to drop this item (mv '{path}' /tmp/)."
        super().__init__(f"{path} is unreadable ({reason}). {self.fix}")


class Forbidden(ConsoleError):
    """The acting user's role does not allow this action."""
