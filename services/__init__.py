"""The console's Python API (seed 001 "API Integration"): pages call these, and so can scripts.

The registry root is `RMN_LORA_HOME` (default: the repo's `datasets/` folder). Names resolve lazily
(PEP 562), so importing one small service module never drags in every heavy dependency.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "upload_dataset": "services.api",
    "validate_dataset": "services.api",
    "list_datasets": "services.datasets",
    "get_dataset": "services.datasets",
    "delete_dataset": "services.datasets",
    "export_dataset": "services.datasets",
    "DatasetRecord": "services.datasets",
    "QualityReport": "services.validation",
    "DatasetKind": "services.shapes",
    "ConsoleError": "services.errors",
    "InvalidFile": "services.errors",
    "InvalidMapping": "services.errors",
    "InvalidName": "services.errors",
    "NotFound": "services.errors",
    "submit_training_job": "services.training",
    "get_job_status": "services.training",
    "cancel_job": "services.training",
    "list_jobs": "services.training",
    "compose_federation": "services.federation",
    "test_federation": "services.federation",
    "save_federation": "federation.store",
    "load_federation": "federation.store",
    "list_federations": "federation.store",
    "delete_federation": "federation.store",
    "Federation": "federation.spec",
    "FederationError": "federation.compose",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'services' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
