"""Settings API: what the console runs with, where each value comes from, and the editable ones saved to the
registry's settings file (atomically) and applied to the running job manager and inference engine at once."""

import re
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from registry.access import Role, requires
from registry.activity import log_event
from registry.errors import ConsoleError
from registry.layout import open_registry
from registry.settings import (
    EDITABLE,
    ENVIRONMENT,
    Settings,
    SettingsFileError,
    read_settings_file,
    setting_sources,
)
from registry.settings import get_settings as _current
from registry.shapes import Objective
from registry.storage import MAX_NAME_LENGTH, atomic_write_json, locked
from services import runtime
from training.config import InvalidConfig, JobConfig, build_config, preset_values

__all__ = [
    "EDITABLE",
    "Settings",
    "SettingRow",
    "SettingsError",
    "adapter_name_for",
    "get_settings",
    "new_job_values",
    "restore_defaults",
    "settings_file_problem",
    "settings_table",
    "update_settings",
]
# Settings a running console picks up without a restart (the rest apply to new uploads, jobs or pages anyway).
LIVE = {"max_concurrent_jobs", "max_loaded_models", "page_size", "theme", "training_defaults"}
RESTART = {"home", "models_dir", "validation_workers"}
_PLACEHOLDER = {"adapter_name": "defaults-check", "train_dataset": "defaults-check"}


class SettingsError(ConsoleError):
    """A settings change that cannot be saved; nothing was written."""


class SettingRow(BaseModel):
    """One line of the Settings page."""

    name: str
    value: Any
    default: Any
    source: str
    environment_variable: str | None
    editable: bool
    applies: str
    description: str


def get_settings() -> Settings:
    return _current()


def settings_file_problem() -> str | None:
    """Why the settings file is being ignored, if it is."""
    try:
        read_settings_file()
    except SettingsFileError as error:
        return f"{error} The defaults apply until it is fixed or the defaults are restored."
    return None


def settings_table() -> list[SettingRow]:
    settings, sources = _current(), setting_sources()
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True) if not field.is_required() else None
        rows.append(
            SettingRow(
                name=name,
                value=getattr(settings, name),
                default=default,
                source=sources[name],
                environment_variable=ENVIRONMENT.get(name),
                editable=name in EDITABLE and sources[name] != "environment",
                applies="after a restart" if name in RESTART else "at once" if name in LIVE else "on the next use",
                description=field.description or "",
            )
        )
    return rows


@requires(Role.ADMIN, "settings.update")
def update_settings(**changes: Any) -> Settings:
    """Save editable settings to the registry's settings file and apply them to the running console.

    Refused (SettingsError, nothing written) for unknown or non-editable names, values out of bounds, training
    defaults JobConfig refuses, or a value the environment pins.
    """
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise SettingsError(f"{', '.join(unknown)} cannot be changed here; editable: {', '.join(EDITABLE)}.")
    sources = setting_sources()
    pinned = [name for name in changes if sources[name] == "environment"]
    if pinned:
        raise SettingsError(
            f"{', '.join(pinned)} is set by the environment ({', '.join(ENVIRONMENT[n] for n in pinned)}), which "
            "overrides the settings file; change it there."
        )
    if "training_defaults" in changes:
        changes["training_defaults"] = _check_training_defaults(changes["training_defaults"])
    registry = open_registry()
    with locked(registry.locks, "settings"):
        try:
            saved = read_settings_file(registry.root)
        except SettingsFileError:
            saved = {}
        merged = {**saved, **changes}
        try:
            Settings.model_validate({"home": ".", "models_dir": ".", **merged})
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ').lower()}"
                for e in error.errors()
            )
            raise SettingsError(f"Not saved: {problems}.") from None
        atomic_write_json(registry.settings_file, merged)
    settings = _apply()
    log_event("settings.changed", f"Settings changed: {', '.join(sorted(changes))}", settings=sorted(changes))
    return settings


@requires(Role.ADMIN, "settings.restore_defaults")
def restore_defaults() -> Settings:
    """Remove the settings file (environment variables still apply)."""
    registry = open_registry()
    with locked(registry.locks, "settings"):
        registry.settings_file.unlink(missing_ok=True)
    settings = _apply()
    log_event("settings.changed", "Settings restored to their defaults")
    return settings


def new_job_values(preset: str | None = None) -> dict[str, Any]:
    """Where every new training job starts, on the one-page form, in the wizard and through the Python / HTTP API
    alike (the one reader of Settings' training defaults): JobConfig's defaults, the saved training defaults over
    them, then `preset`'s settings over both (an unknown preset is refused)."""
    start = {
        name: None if field.is_required() else field.get_default(call_default_factory=True)
        for name, field in JobConfig.model_fields.items()
    }
    return {**start, **_current().training_defaults, **preset_values(preset)}


def adapter_name_for(train_dataset: str | None, adapter_type: str) -> str:
    """The name a new job's adapter is offered (the forms' example under an empty name box): its type, then its
    training dataset's name without the objective (task_planning_sft, task -> task_planning)."""
    stem = re.sub(rf"_({'|'.join(get_args(Objective))})$", "", train_dataset or "adapter")
    name = stem if stem == adapter_type or stem.startswith(f"{adapter_type}_") else f"{adapter_type}_{stem}"
    return name[:MAX_NAME_LENGTH]


def _check_training_defaults(values: Any) -> dict[str, Any]:
    """JobConfig is the one owner of every training rule: the defaults must make a valid config on their own."""
    if not isinstance(values, dict):
        raise SettingsError("Training defaults must be a mapping of setting names to values.")
    refused = sorted(set(values) & {"adapter_name", "train_dataset", "eval_dataset", "experiment"})
    if refused:
        raise SettingsError(f"{', '.join(refused)} is chosen per job, not a default.")
    try:
        config = build_config(**{**_PLACEHOLDER, **values})
    except InvalidConfig as error:
        raise SettingsError(str(error).replace("Invalid training settings", "Invalid training defaults")) from None
    dumped = config.model_dump(mode="json")
    return {name: dumped[name] for name in values if name in JobConfig.model_fields}


def _apply() -> Settings:
    """Push the live settings into the running job manager and inference engine."""
    settings = _current()
    runtime.apply_settings(settings)
    return settings
