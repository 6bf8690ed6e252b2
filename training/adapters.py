"""The adapter registry: trained adapters, versioned, each with the lineage that says how it was made.

Layout: `adapters/<name>/v<N>/` holds the PEFT files (adapter_config.json, adapter_model.safetensors,
tokenizer files) plus `lineage.json`. A version is assembled in the registry's tmp folder and renamed into
place under the adapters lock, so readers never see half an adapter and two jobs never take the same number.
"""

import io
import json
import os
import shlex
import shutil
import uuid
import zipfile
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from registry.activity import log_event
from registry.errors import ConsoleError, CorruptFile, InvalidName, NotFound
from registry.layout import Registry, open_registry
from registry.storage import (
    atomic_write_json,
    case_clash,
    contained,
    load_each,
    load_json_cached,
    locked,
    validate_name,
)
from training.base_models import BaseModelInfo
from training.config import JobConfig
from training.job_folder import TrainingResult

LINEAGE = "lineage.json"
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


class AdapterRecord(BaseModel):
    """One adapter version as the Models page, federation and publish read it (from lineage.json)."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    path: Path
    adapter_type: str
    objective: str
    quantization: str
    created: datetime
    base_model: dict[str, Any]
    dataset: dict[str, Any]
    eval_dataset: dict[str, Any] | None
    config: dict[str, Any]
    metrics: dict[str, float]
    training: dict[str, Any]
    size_bytes: int
    lora_r: int
    lora_alpha: float
    target_modules: list[str] | str
    job_id: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    def usage_commands(self) -> dict[str, str]:
        """Shell commands that use this adapter outside the console: serve it, convert it for llama.cpp."""
        try:
            config = json.loads((self.path / "adapter_config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
        base = str(config.get("base_model_name_or_path") or self.base_model.get("id", "BASE_MODEL"))
        base_path = str(self.base_model.get("path", base))
        module = f"{self.name}-v{self.version}"
        # vLLM takes ranks up to --max-lora-rank (default 16, one of its sizes)
        rank = next((size for size in (16, 32, 64, 128, 256, 512) if size >= self.lora_r), self.lora_r)
        rank_option = f" --max-lora-rank {rank}" if rank > 16 else ""
        return {
            "Serve with vLLM (OpenAI-compatible API)": (
                f"vllm serve {shlex.quote(base)} --enable-lora{rank_option} "
                f"--lora-modules {shlex.quote(f'{module}={self.path}')}"
            ),
            "Convert for llama.cpp (LoRA GGUF)": (
                f"python convert_lora_to_gguf.py {shlex.quote(str(self.path))} --base {shlex.quote(base_path)} "
                f"--outfile {shlex.quote(module)}.gguf --outtype f16"
            ),
            "Run with llama.cpp (base converted with convert_hf_to_gguf.py)": (
                f"llama-server -m {shlex.quote(Path(base).name)}.gguf --lora {shlex.quote(module)}.gguf"
            ),
        }


def check_adapter_name(name: str, registry: Registry | None = None) -> str:
    """A valid adapter name that does not differ only in case from an existing adapter (they would merge on a
    case-insensitive filesystem)."""
    registry = registry or open_registry()
    validate_name(name, "adapter name")
    clash = case_clash(registry.adapters, name)
    if clash is not None:
        raise InvalidName(
            f"An adapter named {clash!r} already exists; names that differ only in case would merge on Windows "
            f"and macOS. Use {clash!r} to train a new version, or choose another name."
        )
    return name


def register_adapter(
    result: TrainingResult,
    config: JobConfig,
    base_info: BaseModelInfo | None = None,
    dataset_info: dict[str, Any] | None = None,
    *,
    job_id: str | None = None,
    registry: Registry | None = None,
) -> AdapterRecord:
    """Copy a completed job's adapter into the registry as the next version of `config.adapter_name`."""
    registry = registry or open_registry()
    name = check_adapter_name(config.adapter_name, registry)
    if result.status != "completed" or result.adapter_path is None:
        raise ConsoleError(f"The job ended {result.status}; only completed jobs produce an adapter to register.")
    source = Path(result.adapter_path)
    missing = [file for file in PEFT_FILES if not (source / file).is_file()]
    if missing:
        raise NotFound(f"The job's adapter folder {source} lacks {', '.join(missing)}; train the job again.")
    base = base_info or result.base_model
    staging = registry.tmp / f"adapter-{uuid.uuid4().hex}"
    shutil.copytree(source, staging)
    try:
        with locked(registry.locks, "adapters"):
            number = _next_version(registry.adapters / name)
            record = AdapterRecord(
                name=name,
                version=number,
                path=registry.adapters / name / f"v{number}",
                adapter_type=config.adapter_type,
                objective=config.objective,
                quantization=config.quantization,
                created=datetime.now(UTC),
                base_model=base.model_dump(mode="json"),
                dataset=dataset_info or result.train_dataset,
                eval_dataset=result.eval_dataset,
                config=config.model_dump(mode="json"),
                metrics={**result.metrics, "tokens_per_second": result.tokens_per_second},
                training={
                    "steps": result.steps,
                    "epoch": result.epoch,
                    "tokens": result.tokens,
                    "train_seconds": result.train_seconds,
                    "device": result.device,
                    "precision": result.precision,
                    "libraries": _library_versions(),
                },
                size_bytes=_folder_size(staging),
                lora_r=config.lora_r,
                lora_alpha=config.lora_alpha,
                target_modules=config.target_modules,
                job_id=job_id,
            )
            atomic_write_json(staging / LINEAGE, record.model_dump(mode="json"))
            record.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, record.path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log_event("adapter.saved", f"Saved adapter {name} v{number}", registry, adapter=name, version=number, job=job_id)
    return record


def list_adapters(search: str = "", registry: Registry | None = None) -> list[AdapterRecord]:
    """The latest version of every adapter, newest first."""
    registry = registry or open_registry()
    needle = search.strip().casefold()
    records = []
    for folder in _dirs(registry.adapters):
        if needle and needle not in folder.name.casefold():
            continue
        readable, _ = load_each(reversed(_versions(folder)), _load)
        if readable:
            records.append(readable[0])
    return sorted(records, key=lambda r: r.created, reverse=True)


def broken_adapters(registry: Registry | None = None) -> list[CorruptFile]:
    """Adapter versions whose lineage.json cannot be read; listing skips them, the page names them."""
    registry = registry or open_registry()
    return [error for folder in _dirs(registry.adapters) for error in load_each(_versions(folder), _load)[1]]


def adapter_versions(name: str, registry: Registry | None = None) -> list[AdapterRecord]:
    """Every version of one adapter, oldest first."""
    registry = registry or open_registry()
    folder = registry.adapters / validate_name(name, "adapter name")
    records, _ = load_each(_versions(folder), _load)
    if not records:
        raise NotFound(f"No adapter named {name!r}. Train one on the Training page first.")
    return records


def get_adapter(name: str, version: int | None = None, registry: Registry | None = None) -> AdapterRecord:
    versions = adapter_versions(name, registry)
    if version is None:
        return versions[-1]
    for record in versions:
        if record.version == version:
            return record
    raise NotFound(f"Adapter {name!r} has no version {version}; it has {', '.join(f'v{r.version}' for r in versions)}.")


def adapter_archive(name: str, version: int | None = None, registry: Registry | None = None) -> bytes:
    """A zip of one version's folder (PEFT files + lineage), ready for download and `PeftModel.from_pretrained`."""
    registry = registry or open_registry()
    record = get_adapter(name, version, registry)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(record.path.rglob("*")):
            if contained(registry.root, file).is_file():
                archive.write(file, f"{record.name}-v{record.version}/{file.relative_to(record.path)}")
    return buffer.getvalue()


def delete_adapter(name: str, version: int | None = None, registry: Registry | None = None) -> None:
    """Delete one version, or the whole adapter when version is None; moved out in one rename, then removed."""
    registry = registry or open_registry()
    record = get_adapter(name, version, registry)
    target = record.path.parent if version is None else record.path
    trash = registry.tmp / f"deleted-adapter-{uuid.uuid4().hex}"
    with locked(registry.locks, "adapters"):
        target.rename(trash)
        if version is not None and not _versions(record.path.parent):
            record.path.parent.rmdir()
    shutil.rmtree(trash, ignore_errors=True)


def _next_version(folder: Path) -> int:
    """One past the highest version present; called under the lock, so two jobs never take the same number."""
    numbers = [int(p.name[1:]) for p in _dirs(folder) if p.name[:1] == "v" and p.name[1:].isdigit()]
    return max(numbers, default=0) + 1


def _versions(folder: Path) -> list[Path]:
    found = [p for p in _dirs(folder) if p.name[:1] == "v" and p.name[1:].isdigit() and (p / LINEAGE).is_file()]
    return sorted(found, key=lambda p: int(p.name[1:]))


def _dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [entry for entry in folder.iterdir() if entry.is_dir()]


def _load(folder: Path) -> AdapterRecord | None:
    """Parse lineage.json, cached by mtime so listing 1,000 adapters costs 1,000 stats."""
    fix = f"Restore it from a backup, or remove this version's folder ('{folder}') to drop it."
    record = load_json_cached(folder / LINEAGE, AdapterRecord.model_validate, fix)
    if record is None or record.path == folder:
        return record
    return record.model_copy(update={"path": folder})


def _folder_size(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())


def _library_versions() -> dict[str, str]:
    return {name: package_version(name) for name in ("torch", "transformers", "peft", "trl", "bitsandbytes")}
