"""The errors callers sort (the HTTP API maps them to status codes); every one is a ConsoleError whose message
says what was wrong and what to do next. Importing this module loads no model library."""

from registry.errors import ConsoleError, InvalidFile, InvalidMapping, InvalidName, NotFound
from training.errors import JobError

__all__ = ["ConsoleError", "InvalidFile", "InvalidMapping", "InvalidName", "JobError", "NotFound"]
