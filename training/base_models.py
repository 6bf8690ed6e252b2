"""Base models a job can train on: the embedded default, local folders, and Hub ids already cached offline.

Nothing is ever downloaded here. A model is described from its config.json and safetensors headers only
(no weights are read), so listing and fingerprinting stay cheap even for multi-GB checkpoints. Weights are
accepted only as safetensors: pickled .bin/.pt files can run code when loaded.
"""

import hashlib
import json
import re
import struct
import threading
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from registry.settings import Settings, get_settings
from training.embedded_model import HUB_ID, MODEL_NAME, embedded_model_dir, prepare_embedded_model
from training.errors import BaseModelError
from training.stack import import_stack

Source = Literal["embedded", "local", "hub"]
EMBEDDED_ALIASES = {MODEL_NAME.lower(), f"huggingfacetb/{MODEL_NAME.lower()}", "embedded", "default"}
# `from_pretrained` is not thread-safe in transformers 5: two threads loading at once can leave the process in a
# state where every later load misses its tied output layer (lm_head stays on the meta device). Every model load
# of the process (training workers, the inference engine) holds this lock.
MODEL_LOAD_LOCK = threading.RLock()
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_SAFETENSORS_DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "U8": "uint8",
    "I8": "int8",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
}


class BaseModelInfo(BaseModel):
    """What lineage and the UI need to know about a base model, read without loading its weights."""

    model_config = ConfigDict(frozen=True)

    id: str
    path: Path
    architecture: str
    model_type: str
    parameters: int
    size_bytes: int
    dtype: str
    fingerprint: str
    source: Source
    ready: bool = True

    @property
    def public_name(self) -> str:
        """The base as a user (or llama.cpp, vLLM, PEFT on another machine) looks it up: the Hub id of the embedded
        model's origin or of a cached Hub model, else the registered name (a local folder's name), never a path of
        this machine. Lineage keeps `path` and `fingerprint` for the exact weights."""
        if self.source == "embedded":
            return HUB_ID
        if self.source == "hub":
            return self.id
        return Path(self.id).name or self.path.name


def resolve_base_model(ref: str | None, settings: Settings | None = None) -> BaseModelInfo:
    """Find a base model offline: None/the embedded name, a local folder, a folder in models_dir, or a cached Hub id."""
    settings = settings or get_settings()
    text = (ref or "").strip()
    if not text or text.lower() in EMBEDDED_ALIASES:
        return describe_folder(prepare_embedded_model(settings), MODEL_NAME, "embedded")
    registered = _registered_path(text, settings)
    if registered is not None:
        return describe_folder(registered, text, "local")
    path = Path(text).expanduser()
    if path.is_dir():
        return describe_folder(path.resolve(), text, "local")
    named = settings.models_dir / text
    if _HUB_ID.match(text) and "/" not in text and named.is_dir():
        return describe_folder(named.resolve(), text, "local")
    if text.startswith((".", "/", "~")) or "\\" in text or path.exists():
        raise BaseModelError(
            f"Base model folder {text!r} does not exist or is not a folder. Give a folder that holds "
            "config.json and *.safetensors weights."
        )
    if not _HUB_ID.match(text):
        raise BaseModelError(f"{text!r} is neither a local folder nor a Hugging Face model id like 'org/model'.")
    return describe_folder(_cached_snapshot(text), text, "hub")


def _registered_path(name: str, settings: Settings) -> Path | None:
    """The folder of a model registered under `name` on the Models page, if any."""
    from registry.layout import open_registry
    from training.registered_models import registered_models

    if "/" in name or "\\" in name or name.startswith("."):
        return None
    return next((m.path for m in registered_models(open_registry(settings)) if m.name == name), None)


def _cached_snapshot(repo_id: str) -> Path:
    """The Hugging Face cache's snapshot of `repo_id`, never touching the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        raise BaseModelError(
            f"Model {repo_id} is not available offline: download it on a machine with Hub access "
            "(e.g. `huggingface-cli download` into the Hugging Face cache) or give a local folder."
        ) from None


def describe_folder(path: Path, model_id: str, source: Source, *, check_loadable: bool = True) -> BaseModelInfo:
    """Check that `path` is a safetensors causal-LM checkpoint and describe it from its headers.

    Without `check_loadable` (listing models for a form), the architecture named in config.json is trusted and
    transformers is not imported, which would pull in torch: seconds before a page can draw its form. Training and
    composition resolve the model with the full check.
    """
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BaseModelError(f"{path} has no config.json: it is not a Hugging Face model folder.")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickles = [p.name for p in path.iterdir() if p.suffix in _PICKLE_SUFFIXES]
        if pickles:
            raise BaseModelError(
                f"{path} holds only pickled weights ({', '.join(pickles[:3])}); for safety weights load only from "
                "safetensors. Convert them with `model.save_pretrained(folder, safe_serialization=True)`."
            )
        raise BaseModelError(f"{path} has no *.safetensors weights.")
    config = _read_config(config_file)
    if check_loadable:
        _check_causal_lm(config, path)
    elif not any(str(name).endswith(("ForCausalLM", "LMHeadModel")) for name in config.get("architectures") or []):
        raise BaseModelError(f"{path.name} does not name a causal language model architecture in its config.json.")
    parameters, dtype = _count_parameters(tuple(weights))
    return BaseModelInfo(
        id=model_id,
        path=path,
        architecture=(config.get("architectures") or [config["model_type"]])[0],
        model_type=config["model_type"],
        parameters=parameters,
        size_bytes=sum(p.stat().st_size for p in weights),
        dtype=dtype,
        fingerprint=fingerprint(path),
        source=source,
    )


def _read_config(config_file: Path) -> dict:
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BaseModelError(f"{config_file} cannot be read as JSON ({error}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise BaseModelError(f"{config_file} has no model_type, so transformers cannot tell what model it is.")
    return config


def _check_causal_lm(config: dict, path: Path) -> None:
    """Refuse models transformers can only run with remote code, and models that are not text generators."""
    import_stack()
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if config["model_type"] not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise BaseModelError(
            f"{path.name} is a {config['model_type']!r} model, which transformers {_tf_version()} cannot load as a "
            "causal language model without running the model's own code (not allowed here)."
        )


def _tf_version() -> str:
    return import_stack().__version__


def _header(file: Path) -> tuple[bytes, int]:
    """The raw JSON header of a safetensors file and the file size."""
    with open(file, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > 100 * 1024 * 1024:
            raise BaseModelError(f"{file.name} has an implausible safetensors header; the file is damaged.")
        return handle.read(length), file.stat().st_size


def _weights_key(path: Path) -> tuple[tuple[str, int, int], ...]:
    files = [path / "config.json", *sorted(path.glob("*.safetensors"))]
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def fingerprint(path: Path) -> str:
    """sha256 over config.json, every safetensors header and size, and samples of the weight bytes.

    Headers alone do not tell two checkpoints of one architecture apart (a base and its fine-tune share every
    shape), so 16 slices of 64 KB spread over each file's data are hashed too: a few MB read, even for 16 GB.
    """
    return _fingerprint(path, _weights_key(path))


# What turns text into tokens and back: two folders with the same weights and another tokenizer or chat template
# answer differently, so a cache of loaded models keys on these files as well as on the weights' fingerprint.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


def tokenizer_fingerprint(path: Path) -> str:
    """sha256 over the tokenizer, chat template and generation config files in a model folder (cached by stat)."""
    files = [path / name for name in TOKENIZER_FILES if (path / name).is_file()]
    return _files_digest(tuple((f, f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@lru_cache(maxsize=256)
def _files_digest(files: tuple[tuple[Path, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for file, _, _ in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


_SAMPLES, _SAMPLE_BYTES = 16, 64 * 1024


@lru_cache(maxsize=256)
def _fingerprint(path: Path, key: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    digest.update((path / "config.json").read_bytes())
    for file in sorted(path.glob("*.safetensors")):
        header, size = _header(file)
        digest.update(file.name.encode() + b"\0" + str(size).encode() + b"\0" + header)
        start = 8 + len(header)
        span = max(size - start - _SAMPLE_BYTES, 0)
        with open(file, "rb") as handle:
            for index in range(_SAMPLES):
                handle.seek(start + span * index // (_SAMPLES - 1))
                digest.update(handle.read(_SAMPLE_BYTES))
    return digest.hexdigest()


@lru_cache(maxsize=256)
def _count_parameters(files: tuple[Path, ...]) -> tuple[int, str]:
    total = 0
    dtypes: Counter[str] = Counter()
    for file in files:
        header = json.loads(_header(file)[0])
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in entry["shape"]:
                count *= dim
            total += count
            dtypes[entry["dtype"]] += count
    dtype = dtypes.most_common(1)[0][0] if dtypes else "unknown"
    return total, _SAFETENSORS_DTYPES.get(dtype, dtype.lower())


def list_base_models(settings: Settings | None = None) -> list[BaseModelInfo]:
    """The embedded default (marked not ready until converted) plus every usable folder under models_dir.

    Cheap: no transformers or torch import (the full check runs when a job or a federation resolves the model).
    """
    settings = settings or get_settings()
    embedded = embedded_model_dir(settings)
    models: list[BaseModelInfo] = []
    try:
        models.append(describe_folder(embedded, MODEL_NAME, "embedded", check_loadable=False))
    except BaseModelError:
        models.append(
            BaseModelInfo(
                id=MODEL_NAME,
                path=embedded,
                architecture="LlamaForCausalLM",
                model_type="llama",
                parameters=0,
                size_bytes=0,
                dtype="float32",
                fingerprint="",
                source="embedded",
                ready=False,
            )
        )
    if settings.models_dir.is_dir():
        for folder in sorted(settings.models_dir.iterdir()):
            if folder == embedded or folder.name.startswith(".") or not folder.is_dir():
                continue
            try:
                models.append(describe_folder(folder, folder.name, "local", check_loadable=False))
            except BaseModelError:
                continue
    from registry.layout import open_registry
    from training.registered_models import registered_models

    known = {m.path for m in models}
    for registered in registered_models(open_registry(settings)):
        if registered.path in known:
            continue
        try:
            models.append(describe_folder(registered.path, registered.name, "local", check_loadable=False))
        except BaseModelError:
            continue
    return models


def linear_module_names(info: BaseModelInfo) -> set[str]:
    """Dotted names of the layers LoRA can adapt, from a weightless (meta-device) copy of the model."""
    return set(_linear_modules(info.path, info.fingerprint))


@lru_cache(maxsize=32)
def _linear_modules(path: Path, _fingerprint: str) -> tuple[str, ...]:
    import torch

    import_stack()
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return tuple(name for name, module in model.named_modules() if isinstance(module, (torch.nn.Linear, Conv1D)))


def unknown_target_modules(info: BaseModelInfo, requested: list[str]) -> list[str]:
    """Requested target modules that match no linear layer of the model (PEFT matches by name suffix)."""
    names = linear_module_names(info)
    return [key for key in requested if not any(name == key or name.endswith(f".{key}") for name in names)]


def suggested_target_modules(info: BaseModelInfo) -> list[str]:
    """Short names of the adaptable layers (lm_head excluded), for the form's multiselect and error messages."""
    output = {"lm_head", "embed_out", "output"}
    return sorted({name.rsplit(".", 1)[-1] for name in linear_module_names(info)} - output)
