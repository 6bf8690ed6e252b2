"""Base models registered from local folders, and the description / tags of every model in the registry.

Layout: `models/<name>.json` per registered folder (the folder itself stays where it is; unregistering never
deletes it) and `models/annotations.json` for descriptions and tags, keyed by "<kind>:<name>".
A folder is accepted only when transformers can load it without running anything from it: config.json,
safetensors weights and nothing pickled, a tokenizer, and no `auto_map` (remote code) in any config.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from registry.errors import NotFound
from registry.layout import Registry, open_registry
from registry.storage import atomic_write_json, bump_generation, load_json_cached, locked, read_json, validate_name
from training.base_models import BaseModelError, BaseModelInfo, describe_folder

ModelKind = Literal["base", "adapter", "package"]
ANNOTATIONS = "annotations.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
MAX_TAGS, MAX_TAG, MAX_DESCRIPTION = 12, 32, 2000


class RegisteredModel(BaseModel):
    """A local model folder the user added, with what was read from it when it was registered."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    registered: datetime
    info: BaseModelInfo


class Annotation(BaseModel):
    """The editable metadata of a model: a description and tags (plain text, never rendered as Markdown)."""

    model_config = ConfigDict(frozen=True)

    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    tags: list[str] = Field(default_factory=list, max_length=MAX_TAGS)


def check_model_folder(path: Path) -> None:
    """Refuse, with the reason, a folder that is not a safe, self-contained causal-LM checkpoint."""
    if not path.is_dir():
        raise BaseModelError(f"{path} is not a folder. Give the folder that holds config.json and *.safetensors.")
    if not (path / "config.json").is_file():
        raise BaseModelError(f"{path} has no config.json: it is not a Hugging Face model folder.")
    pickled = sorted(p.name for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise BaseModelError(
            f"{path} contains pickled checkpoint files ({', '.join(pickled[:3])}): loading a pickle can run code, so "
            "only safetensors are accepted. Convert with `model.save_pretrained(folder, safe_serialization=True)` "
            "and remove the pickled files."
        )
    if not list(path.glob("*.safetensors")):
        raise BaseModelError(f"{path} has no *.safetensors weights.")
    for config_name in ("config.json", "tokenizer_config.json", "generation_config.json"):
        config_file = path / config_name
        if not config_file.is_file():
            continue
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise BaseModelError(f"{config_file} cannot be read as JSON ({error}).") from None
        if isinstance(config, dict) and config.get("auto_map"):
            raise BaseModelError(
                f"{config_name} in {path} has an auto_map: the model needs its own Python code "
                f"({', '.join(sorted(config['auto_map'])[:3])}), and remote code is never run here."
            )
    if list(path.glob("*.py")):
        raise BaseModelError(f"{path} ships Python files; remote code is never run here. Use a plain checkpoint.")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise BaseModelError(
            f"{path} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json). Save it beside the weights "
            "with `tokenizer.save_pretrained(folder)`."
        )


def register_base_model(name: str, path: str | Path, registry: Registry | None = None) -> RegisteredModel:
    """Validate a local folder and add it under `name`; nothing is written when it is refused."""
    registry = registry or open_registry()
    name = validate_name(name, "model name")
    folder = Path(str(path)).expanduser()
    check_model_folder(folder)
    folder = folder.resolve()
    info = describe_folder(folder, name, "local")
    record = RegisteredModel(name=name, path=folder, registered=datetime.now(UTC), info=info)
    target = registry.models / f"{name}.json"
    with locked(registry.locks, "models"):
        if target.exists():
            raise BaseModelError(f"A model named {name!r} is already registered. Choose another name.")
        clash = next((m for m in registered_models(registry) if m.path == folder), None)
        if clash is not None:
            raise BaseModelError(f"{folder} is already registered as {clash.name!r}.")
        atomic_write_json(target, record.model_dump(mode="json"))
        bump_generation(registry.models)
    return record


def registered_models(registry: Registry | None = None) -> list[RegisteredModel]:
    """Every readable registration, by name; a broken file is skipped, never fatal."""
    registry = registry or open_registry()
    found = []
    for file in sorted(registry.models.glob("*.json")):
        if file.name == ANNOTATIONS:
            continue
        try:
            record = load_json_cached(file, RegisteredModel.model_validate)
        except (ValueError, OSError):
            continue
        if record is not None:
            found.append(record)
    return found


def get_registered(name: str, registry: Registry | None = None) -> RegisteredModel:
    registry = registry or open_registry()
    file = registry.models / f"{validate_name(name, 'model name')}.json"
    try:
        record = load_json_cached(file, RegisteredModel.model_validate)
    except (ValueError, OSError):
        record = None
    if record is None:
        raise NotFound(f"No registered model named {name!r}.")
    return record


def unregister_base_model(name: str, registry: Registry | None = None) -> None:
    """Forget a registration (the folder on disk is left alone)."""
    registry = registry or open_registry()
    get_registered(name, registry)
    with locked(registry.locks, "models"):
        (registry.models / f"{name}.json").unlink(missing_ok=True)
        bump_generation(registry.models)


def annotations(registry: Registry | None = None) -> dict[str, Annotation]:
    registry = registry or open_registry()
    file = registry.models / ANNOTATIONS
    if not file.is_file():
        return {}
    try:
        raw = read_json(file)
        return {key: Annotation.model_validate(value) for key, value in raw.items()}
    except (ValueError, OSError, AttributeError, ValidationError):
        return {}


def annotate(
    kind: ModelKind, name: str, *, description: str | None = None, tags: list[str] | None = None, registry=None
) -> Annotation:
    """Set a model's description and / or tags; tags are trimmed, de-duplicated and at most 12 of 32 characters."""
    registry = registry or open_registry()
    key = f"{kind}:{name}"
    with locked(registry.locks, "models"):
        current = annotations(registry)
        old = current.get(key, Annotation())
        changes: dict[str, Any] = {}
        if description is not None:
            changes["description"] = description.strip()
        if tags is not None:
            cleaned = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
            too_long = [t for t in cleaned if len(t) > MAX_TAG]
            if too_long:
                raise BaseModelError(f"Tag {too_long[0][:40]!r} is longer than {MAX_TAG} characters.")
            changes["tags"] = cleaned
        try:
            new = Annotation.model_validate({**old.model_dump(), **changes})
        except ValidationError:
            raise BaseModelError(
                f"A description holds at most {MAX_DESCRIPTION} characters and a model at most {MAX_TAGS} tags."
            ) from None
        current[key] = new
        atomic_write_json(registry.models / ANNOTATIONS, {k: v.model_dump() for k, v in current.items()})
    return new


def forget_annotation(kind: ModelKind, name: str, registry: Registry | None = None) -> None:
    registry = registry or open_registry()
    with locked(registry.locks, "models"):
        current = annotations(registry)
        if current.pop(f"{kind}:{name}", None) is not None:
            atomic_write_json(registry.models / ANNOTATIONS, {k: v.model_dump() for k, v in current.items()})
