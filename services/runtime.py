"""The process-wide runtime: one job manager per registry and one inference engine per process.

Pages, scripts and the API all reach them through here, so a server never holds two model caches or two
queues over the same registry.
"""

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from registry.layout import open_registry
from training.jobs import JobManager

if TYPE_CHECKING:  # federation.engine pulls in torch when used; a page that only lists things need not load it
    from federation.engine import InferenceEngine

_managers: dict[Path, JobManager] = {}
_managers_lock = threading.Lock()


def job_manager() -> JobManager:
    """The manager of the current registry (`RMN_LORA_HOME` is read on every call, so tests can switch it)."""
    registry = open_registry()
    with _managers_lock:
        if registry.root not in _managers:
            _managers[registry.root] = JobManager(registry)
        return _managers[registry.root]


def inference_engine() -> "InferenceEngine":
    """The engine every page, session and API call shares, so loaded models (the slow part) are loaded once."""
    from federation.engine import default_engine

    return default_engine()
