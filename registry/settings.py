"""What the console runs with, and where each value comes from: default < settings file < environment.

The settings file is `settings.json` in the registry root; the Settings page writes it (atomically) for the
editable values. An environment variable always wins, so a deployment can pin a value the page cannot change.
The registry root and the models folder come from the environment only (the file lives inside the root).
"""

import functools
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[1]
SETTINGS_FILE = "settings.json"
Source = Literal["default", "settings file", "environment"]


class Settings(BaseModel):
    """Console settings; environment variables override the settings file, which overrides the defaults.
    Frozen: `get_settings()` hands the same instance to every caller while nothing changed (change a copy made
    with `model_copy(update=...)`)."""

    model_config = ConfigDict(frozen=True)

    home: Path = Field(description="Registry root: datasets, mappings, raw sources, adapters, jobs.")
    models_dir: Path = Field(description="Cache of base models converted to safetensors (large; outside the registry).")
    max_upload_mb: int = Field(default=200, ge=1, le=10_240, description="Largest dataset upload, in MB.")
    max_line_mb: int = Field(default=8, ge=1, le=1024, description="Longest line of a JSONL / CSV file, in MB.")
    max_concurrent_jobs: int = Field(default=1, ge=1, le=16, description="Training jobs that may run at once.")
    max_loaded_models: int = Field(default=2, ge=1, le=16, description="Models the inference engine keeps in memory.")
    training_backend: str = Field(
        default="local",
        description="Where jobs train: 'local' (threads in this process) or a Ray cluster address "
        "(e.g. 127.0.0.1:6379, ray://head:10001, or 'auto').",
    )
    validation_workers: int = Field(
        default=2, ge=1, le=64, description="Processes that validate one large JSONL file in parts (1: in-process)."
    )
    request_log: bool = Field(
        default=True, description="Log every generation the inference engine serves (Performance Dashboard)."
    )
    auto_evaluate: bool = Field(
        default=True,
        description="Evaluate a completed job's adapter and its base model on the job's evaluation dataset "
        "(in the background, beside training; benches that time training turn it off).",
    )
    cpu_hour_price: float = Field(
        default=0.10, ge=0, le=1000, description="Price of one hour of this machine's CPUs, in USD (cost tracking)."
    )
    gpu_hour_price: float = Field(
        default=1.20, ge=0, le=1000, description="Price of one GPU for one hour, in USD (cost tracking)."
    )
    theme: Literal["light", "dark"] = Field(default="light", description="Colour scheme of the console.")
    page_size: int = Field(default=25, ge=5, le=200, description="Rows per page in every paginated table.")
    training_defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Training settings new jobs start from (any Training Jobs setting, e.g. epochs, lora_r).",
    )

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def max_line_bytes(self) -> int:
        return self.max_line_mb * 1024 * 1024


ENVIRONMENT = {
    "home": "RMN_LORA_HOME",
    "models_dir": "RMN_LORA_MODELS",
    "max_upload_mb": "RMN_LORA_MAX_UPLOAD_MB",
    "max_line_mb": "RMN_LORA_MAX_LINE_MB",
    "max_concurrent_jobs": "RMN_LORA_MAX_CONCURRENT_JOBS",
    "max_loaded_models": "RMN_LORA_MAX_LOADED_MODELS",
    "training_backend": "RMN_LORA_TRAINING_BACKEND",
    "validation_workers": "RMN_LORA_VALIDATION_WORKERS",
    "request_log": "RMN_LORA_REQUEST_LOG",
    "auto_evaluate": "RMN_LORA_AUTO_EVALUATE",
    "cpu_hour_price": "RMN_LORA_CPU_HOUR_PRICE",
    "gpu_hour_price": "RMN_LORA_GPU_HOUR_PRICE",
    "theme": "RMN_LORA_THEME",
    "page_size": "RMN_LORA_PAGE_SIZE",
}
# What the Settings page may write to the settings file.
EDITABLE = (
    "max_concurrent_jobs",
    "max_loaded_models",
    "cpu_hour_price",
    "gpu_hour_price",
    "theme",
    "page_size",
    "training_defaults",
)


class SettingsFileError(ValueError):
    """The settings file exists but cannot be used; the defaults (and environment) apply meanwhile."""


def _defaults() -> dict[str, Any]:
    return {
        "home": REPO_ROOT / "datasets",
        "models_dir": REPO_ROOT / ".cache" / "models",
        "validation_workers": min(2, os.cpu_count() or 1),
    }


def _environment() -> dict[str, str]:
    return {field: os.environ[name] for field, name in ENVIRONMENT.items() if os.environ.get(name)}


def _home() -> Path:
    return _resolved(os.environ.get("RMN_LORA_HOME") or str(REPO_ROOT / "datasets"))


@functools.lru_cache(maxsize=32)
def _resolved(path: str) -> Path:
    """An absolute folder path, resolved once per process (each resolution stats every part of the path)."""
    return Path(path).expanduser().resolve()


_file_cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def read_settings_file(home: Path | None = None) -> dict[str, Any]:
    """The editable values saved in the registry's settings file ({} when there is none).

    Raises SettingsFileError when the file is unreadable or holds values the console refuses.
    """
    path = (home or _home()) / SETTINGS_FILE
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    # the inode too: a save replaces the file, and two saves can land in one tick of coarse file timestamps
    stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
    cached = _file_cache.get(path)
    if cached and cached[0] == stamp:
        return cached[1]
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SettingsFileError(f"{path} cannot be read as JSON ({error}).") from None
    if not isinstance(values, dict):
        raise SettingsFileError(f"{path} must hold a JSON object of setting names to values.")
    unknown = sorted(set(values) - set(EDITABLE))
    if unknown:
        raise SettingsFileError(f"{path} sets {', '.join(unknown)}, which cannot be set there.")
    try:
        Settings.model_validate({"home": ".", "models_dir": ".", **values})
    except ValidationError as error:
        first = error.errors()[0]
        raise SettingsFileError(f"{path}: {'.'.join(map(str, first['loc']))} {first['msg'].lower()}.") from None
    _file_cache[path] = (stamp, values)
    return values


def get_settings() -> Settings:
    """Read the settings now, so a changed `RMN_LORA_HOME` or settings file takes effect on the next call.

    A broken settings file is ignored here (the Settings page shows why); a bad environment value raises.
    """
    environment = _environment()
    try:
        saved = read_settings_file()
    except SettingsFileError:
        saved = {}
    key = tuple(environment.items())
    cached = _built.get(key)
    if cached is not None and cached[0] == saved:
        return cached[1]
    settings = Settings.model_validate({**_defaults(), **saved, **environment})
    settings = settings.model_copy(
        update={"home": _resolved(str(settings.home)), "models_dir": _resolved(str(settings.models_dir))}
    )
    if len(_built) >= 64:  # one entry per environment seen (tests change RMN_LORA_HOME): keep it small
        _built.clear()
    _built[key] = (saved, settings)
    return settings


# The settings last built for an environment, with the settings-file values they were built from: every registry
# open asks for the settings, and validating them again (and resolving two paths) cost each call ~0.25 ms.
_built: dict[tuple[tuple[str, str], ...], tuple[dict[str, Any], Settings]] = {}


def setting_sources() -> dict[str, Source]:
    """Where each setting's current value comes from."""
    try:
        saved = read_settings_file()
    except SettingsFileError:
        saved = {}
    environment = _environment()
    return {
        name: "environment" if name in environment else "settings file" if name in saved else "default"
        for name in Settings.model_fields
    }
