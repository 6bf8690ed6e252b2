"""The errors callers sort (the HTTP API maps them to status codes); every one is a ConsoleError whose message
says what was wrong and what to do next. Importing this module loads no model library."""

from evaluation.runs import RunError
from registry.access import AuthError
from registry.errors import ConsoleError, Forbidden, InvalidFile, InvalidMapping, InvalidName, NotFound
from training.errors import JobError

__all__ = [
    "AuthError",
    "ConsoleError",
    "Forbidden",
    "InvalidFile",
    "InvalidMapping",
    "InvalidName",
    "JobError",
    "NotFound",
    "RunError",
]
