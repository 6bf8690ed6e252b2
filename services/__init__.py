"""The console's Python API: pages call these, and so can scripts.

One module per area: datasets, mappings, training (jobs, adapters, base models), federation, playground,
overview (Home's counts), activity, models (base models, adapters, packages;
publish), settings and demo; `runtime` owns the process-wide job manager and inference
engine. Pages import this package only; it builds on training, federation and registry below it.

The registry root is `RMN_LORA_HOME` (default: the repo's `datasets/` folder). Names resolve lazily
(PEP 562), so importing one small service module never drags in every heavy dependency.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "upload_dataset": "services.datasets",
    "validate_dataset": "services.datasets",
    "list_datasets": "services.datasets",
    "get_dataset": "services.datasets",
    "delete_dataset": "services.datasets",
    "export_dataset": "services.datasets",
    "DatasetRecord": "services.datasets",
    "QualityReport": "services.datasets",
    "DatasetKind": "services.datasets",
    "ConsoleError": "registry.errors",
    "human_size": "registry.sizes",
    "MAX_NAME_LENGTH": "registry.storage",
    "InvalidFile": "registry.errors",
    "InvalidMapping": "registry.errors",
    "InvalidName": "registry.errors",
    "NotFound": "registry.errors",
    "submit_training_job": "services.training",
    "get_job_status": "services.training",
    "cancel_job": "services.training",
    "list_jobs": "services.training",
    "list_adapters": "services.training",
    "get_adapter": "services.training",
    "list_base_models": "services.training",
    "compose_federation": "services.federation",
    "test_federation": "services.federation",
    "save_federation": "services.federation",
    "load_federation": "services.federation",
    "list_federations": "services.federation",
    "delete_federation": "services.federation",
    "Federation": "services.federation",
    "FederationError": "services.federation",
    "broken_files": "services.health",
    "CorruptFile": "registry.errors",
    "Forbidden": "registry.errors",
    "run_evaluation": "services.evaluation",
    "get_evaluation": "services.evaluation",
    "list_evaluations": "services.evaluation",
    "compare_evaluations": "services.evaluation",
    "cancel_evaluation": "services.evaluation",
    "system_health": "services.monitoring",
    "adapter_performance": "services.monitoring",
    "request_records": "services.monitoring",
    "recent_activity": "services.activity",
    "export_activity": "services.activity",
    "list_models": "services.models",
    "get_model": "services.models",
    "register_base_model": "services.models",
    "update_model": "services.models",
    "delete_model": "services.models",
    "publish": "services.models",
    "submit_publish": "services.models",
    "list_packages": "services.models",
    "check_package": "services.models",
    "get_settings": "services.settings",
    "update_settings": "services.settings",
    "restore_defaults": "services.settings",
    "registry_overview": "services.overview",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'services' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
