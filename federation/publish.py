"""Publish: turn an adapter (or an additive federation) into a package a serving stack can run.

Merged: the LoRA delta is folded into the base weights and saved as a plain transformers checkpoint
(safetensors, sharded above `max_shard_size`), with the tokenizer and chat template the adapter was trained
with, the generation config, a model card and a manifest of every file's SHA-256. Unmerged: the adapter in
PEFT layout plus a vLLM multi-LoRA command line (the base model stays where it is).

A package is verified before it is offered: a fresh Python process that imports only torch, transformers (and
peft for an unmerged package) loads it and computes logits on probe prompts; they must equal the logits of the
base model with the adapter applied by PEFT in this process, within the tolerance stated in the manifest.

Layout: `packages/<name>/package/` (the files), `packages/<name>/<name>.zip` (the download) and
`packages/<name>/record.json`. A package is assembled in the registry's tmp folder and renamed into place.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from federation.compose import MemberRequest, compose
from federation.engine import add_weighted, sum_key
from federation.errors import FederationError, PackageCorrupt, PublishError
from federation.spec import Federation
from registry.errors import NotFound
from registry.layout import Registry, open_registry
from registry.storage import (
    atomic_write_json,
    atomic_write_text,
    bump_generation,
    claimed,
    load_json_cached,
    locked,
    sha256_file,
    suggest_name,
    validate_name,
)
from training.adapters import PEFT_FILES, AdapterRecord, get_adapter

MANIFEST = "manifest.json"
RECORD = "record.json"
PACKAGE_DIR = "package"
ADAPTER_DIR = "adapter"
# The Publish form's choices; the Python and HTTP APIs take any size transformers parses (e.g. "100KB").
SHARD_SIZES = ("500MB", "1GB", "2GB", "5GB", "10GB")
DEFAULT_SHARD_SIZE = "2GB"
# Largest |logit difference| accepted between the package in a fresh process and base + PEFT adapter here.
# float32: merging W + s*B@A once instead of adding s*B(Ax) per token only reorders float sums (measured 1e-5).
TOLERANCE = {"float32": 1e-3, "bfloat16": 0.25, "float16": 0.05}
PROBE_PROMPTS = (
    "Map field 'adType' with value 'sp' from Amazon to RMIS.",
    "Plan a $10,000 campaign for snacks on Kroger. Which placements get the budget?",
    "What does a retail media network sell?",
)
VERIFY_TIMEOUT = 1800.0
# vLLM accepts these --max-lora-rank values; the adapter's rank is rounded up to the next one.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_PROJECT_PACKAGES = ("registry", "training", "federation", "services", "views")
# What a publish reports as it goes (the job's progress bar counts them); a caller's callback may raise to stop it.
STAGES = (
    "loading the base model and the adapter",
    "writing the weights",
    "verifying in a fresh process",
    "writing the model card and manifest",
    "zipping the archive",
)


def _ignore(*_: object) -> None:
    return None


class Verification(BaseModel):
    """The fresh-process check of a package, written into its manifest and record."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    max_abs_diff: float
    tolerance: float
    top1_agreement: float = Field(description="Share of positions whose most likely next token is the same.")
    positions: int
    prompts: int
    loader: str = Field(description="What loaded the package in the fresh process.")
    project_modules_imported: list[str]
    seconds: float


class PackageRecord(BaseModel):
    """One published package as the Models page and the API see it."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["merged", "adapter"]
    created: datetime
    source: dict[str, Any] = Field(description="{'type': 'adapter'|'federation', 'ref': ..., 'label': ...}")
    base_model: dict[str, Any]
    adapters: list[dict[str, Any]]
    dtype: str
    files: int
    size_bytes: int
    archive_bytes: int
    shards: int
    path: Path
    archive: Path
    verification: Verification
    publish_seconds: float
    serve_command: str | None = None
    licence: str
    intended_use: str
    description: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.kind})"


def publish(
    source: str,
    *,
    merge: bool = True,
    name: str | None = None,
    version: int | None = None,
    licence: str = "other",
    intended_use: str = "",
    description: str = "",
    max_shard_size: str = DEFAULT_SHARD_SIZE,
    registry: Registry | None = None,
    on_stage: Callable[[str], None] = _ignore,
    checkpoint: Callable[[], None] = _ignore,
) -> PackageRecord:
    """Build, verify and register a package from an adapter name or a saved federation id (fed_...).

    Refused with the reason, and nothing written, when the source cannot be merged (a gated or sequential
    federation, an approximate combination) or the verification fails. `on_stage` is called with each of
    `STAGES` as it starts and `checkpoint` about every second while the fresh process verifies; either may
    raise to stop the publish, which then leaves nothing behind.
    """
    registry = registry or open_registry()
    started = time.perf_counter()
    federation, records, source_info, name = plan(
        source, merge=merge, name=name, version=version, max_shard_size=max_shard_size, registry=registry
    )
    kind = "merged" if merge else "adapter"
    target = registry.packages / name
    # Claimed for as long as this runs: if the process is killed, the next start-up removes the folder at once.
    with claimed(registry.locks, registry.tmp / f"package-{uuid.uuid4().hex}") as staging:
        folder = staging / PACKAGE_DIR
        built = _build(federation, records, folder, merge=merge, max_shard_size=max_shard_size, on_stage=on_stage)
        on_stage(STAGES[2])
        verification = verify_in_fresh_process(folder, built, federation, checkpoint)
        if not verification.passed:
            raise PublishError(
                f"The package did not reproduce the adapter: its logits differ by up to {verification.max_abs_diff:.3g} "
                f"(tolerance {verification.tolerance:g}). Nothing was published."
            )
        on_stage(STAGES[3])
        serve = _serve_command(name, federation, records) if not merge else None
        atomic_write_text(
            folder / "README.md",
            model_card(name, kind, federation, records, verification, built["dtype"], licence, intended_use, serve),
        )
        if serve:
            atomic_write_text(folder / "serve.sh", f"#!/bin/sh\n# Serve {name} with vLLM (multi-LoRA).\n{serve}\n")
        manifest = write_manifest(folder, {"verification": verification.model_dump(), "source": source_info})
        on_stage(STAGES[4])
        archive = staging / f"{name}.zip"
        _zip(folder, archive, name)
        record = PackageRecord(
            name=name,
            kind=kind,
            created=datetime.now(UTC),
            source=source_info,
            base_model=federation.base.model_dump(),
            adapters=[_adapter_summary(r) for r in records],
            dtype=built["dtype"],
            files=len(manifest["files"]) + 1,
            size_bytes=sum(f["size"] for f in manifest["files"].values()) + (folder / MANIFEST).stat().st_size,
            archive_bytes=archive.stat().st_size,
            shards=len(list(folder.glob("*.safetensors"))),
            path=target / PACKAGE_DIR,
            archive=target / f"{name}.zip",
            verification=verification,
            publish_seconds=round(time.perf_counter() - started, 2),
            serve_command=serve,
            licence=licence,
            intended_use=intended_use,
            description=description,
        )
        atomic_write_json(staging / RECORD, record.model_dump(mode="json"))
        with locked(registry.locks, "packages"):
            if target.exists():
                raise PublishError(f"A package named {name!r} was published meanwhile. Choose another name.")
            os.replace(staging, target)
            bump_generation(registry.packages)
    return record


def plan(
    source: str,
    *,
    merge: bool = True,
    name: str | None = None,
    version: int | None = None,
    max_shard_size: str = DEFAULT_SHARD_SIZE,
    registry: Registry,
) -> tuple[Federation, list[AdapterRecord], dict[str, Any], str]:
    """Resolve the source and the package name without loading any weights: the checks a publish job passes
    before it is queued (a missing adapter, a federation that cannot be published, a taken name, a shard size
    that saving would refuse only after the merge)."""
    from federation.store import load_federation

    check_shard_size(max_shard_size)
    if source.startswith("fed_"):
        federation = load_federation(source, registry)
        _check_publishable(federation)
        records = [get_adapter(m.adapter, m.version, registry) for m in federation.members]
        label = federation.name
        source_info = {"type": "federation", "ref": federation.id, "label": federation.name}
    else:
        record = get_adapter(source, version, registry)
        federation = compose([MemberRequest(adapter=record.name, version=record.version)])
        records = [record]
        label = record.label
        source_info = {"type": "adapter", "ref": record.name, "version": record.version, "label": record.label}
    kind = "merged" if merge else "adapter"
    name = validate_name(name or suggest_name(f"{label.replace(' ', '-')}-{kind}"), "package name")
    if (registry.packages / name).exists():
        raise PublishError(f"A package named {name!r} already exists. Choose another name or delete it first.")
    return federation, records, source_info, name


def check_shard_size(size: str) -> int:
    """The size in bytes, parsed as transformers' `save_pretrained` will parse it; PublishError if it cannot."""
    from transformers.utils.hub import convert_file_size_to_int

    try:
        parsed = convert_file_size_to_int(size)
    except (AttributeError, ValueError):
        parsed = 0
    if parsed <= 0:
        raise PublishError(
            f"Shard size {size!r} is not a size: write a whole number and a unit, like 2GB, 500MB or 100KB."
        )
    return parsed


def _check_publishable(federation: Federation) -> None:
    if federation.method != "additive":
        raise PublishError(
            f"{federation.name} is a {federation.method} federation: its answer depends on the request (a router or "
            "a chain), so it has no single set of weights to publish. Publish its adapters one by one instead."
        )
    if not federation.exact:
        raise PublishError(
            f"{federation.name} combines its adapters by {federation.combination!r}, an approximation; publish "
            "packages only of the exact sum ('cat') so the package reproduces what was tested."
        )


def _adapter_summary(record: AdapterRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "rank": record.lora_r,
        "alpha": record.lora_alpha,
        "target_modules": record.target_modules,
        "dataset": {
            k: record.dataset.get(k)
            for k in ("name", "kind", "version", "content_hash", "rows", "path")
            if k in record.dataset
        },
        "metrics": record.metrics,
        "config": record.config,
        "job_id": record.job_id,
    }


def _build(
    federation: Federation,
    records: list[AdapterRecord],
    folder: Path,
    *,
    merge: bool,
    max_shard_size: str,
    on_stage: Callable[[str], None],
) -> dict[str, Any]:
    """Write the package files and return the reference logits (base + adapter by PEFT, unmerged) for the check."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.models import load_tokenizer

    on_stage(STAGES[0])
    base_path = Path(federation.base.path)
    tokenizer_source = records[0].path if (records[0].path / "tokenizer_config.json").is_file() else base_path
    tokenizer = load_tokenizer(tokenizer_source)
    dtype = _stored_dtype(base_path)
    model = AutoModelForCausalLM.from_pretrained(
        base_path, dtype=torch.float32, use_safetensors=True, local_files_only=True
    )
    members = federation.members
    single = len(members) == 1 and members[0].weight == 1.0
    model = PeftModel.from_pretrained(model, records[0].path, adapter_name=members[0].key, is_trainable=False)
    for member, record in zip(members[1:], records[1:], strict=True):
        model.load_adapter(record.path, adapter_name=member.key, is_trainable=False)
    key = members[0].key
    if not single:
        key = sum_key(federation)
        add_weighted(model, federation, key)
    model.set_adapter(key)
    model.eval()
    probes = [
        list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True, return_dict=True
            )["input_ids"]
        )
        for prompt in PROBE_PROMPTS
    ]
    with torch.no_grad():
        reference = [model(input_ids=torch.tensor([ids])).logits[0].float() for ids in probes]
    on_stage(STAGES[1])
    folder.mkdir(parents=True)
    if merge:
        merged = model.merge_and_unload(adapter_names=[key])
        merged.to(getattr(torch, dtype)).save_pretrained(folder, safe_serialization=True, max_shard_size=max_shard_size)
    else:
        adapter = folder / ADAPTER_DIR
        if single:
            adapter.mkdir()
            for file in PEFT_FILES:
                shutil.copy2(records[0].path / file, adapter / file)
        else:
            model.save_pretrained(folder / ".peft", selected_adapters=[key], safe_serialization=True)
            os.replace(folder / ".peft" / key, adapter)
            shutil.rmtree(folder / ".peft")
            config_file = adapter / "adapter_config.json"
            config = json.loads(config_file.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = str(base_path)
            atomic_write_json(config_file, config)
    tokenizer.save_pretrained(folder)
    generation = base_path / "generation_config.json"
    if not merge and generation.is_file():
        shutil.copy2(generation, folder / "generation_config.json")
    return {"probes": probes, "reference": reference, "dtype": dtype if merge else "float32", "base_path": base_path}


def _stored_dtype(path: Path) -> str:
    from training.base_models import describe_folder

    dtype = describe_folder(path, path.name, "local").dtype
    return dtype if dtype in TOLERANCE else "float32"


_CHECK_SCRIPT = r"""
import json, sys
import torch, transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM
package, base, request, out = sys.argv[1:5]
probes = json.load(open(request))
if base:
    from peft import PeftModel
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, use_safetensors=True, local_files_only=True)
    model = PeftModel.from_pretrained(model, package + "/adapter")
    loader = "transformers " + transformers.__version__ + " AutoModelForCausalLM + peft PeftModel"
else:
    model = AutoModelForCausalLM.from_pretrained(package, dtype=torch.float32, use_safetensors=True, local_files_only=True)
    loader = "transformers " + transformers.__version__ + " AutoModelForCausalLM.from_pretrained"
model.eval()
with torch.no_grad():
    logits = {str(i): model(input_ids=torch.tensor([ids])).logits[0].float().contiguous() for i, ids in enumerate(probes)}
save_file(logits, out)
ours = sorted(m for m in sys.modules if m.split(".")[0] in %s)
print(json.dumps({"loader": loader, "project_modules": ours}))
"""


def _wait(process: subprocess.Popen, checkpoint: Callable[[], None], timeout: float) -> None:
    """Wait for the process, calling `checkpoint` (which may raise to stop) about every second."""
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        checkpoint()
        if time.monotonic() > deadline:
            raise PublishError(f"Loading the package back took over {timeout:.0f} s; nothing was published.")
        try:
            process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            continue


def verify_in_fresh_process(
    folder: Path, built: dict[str, Any], federation: Federation, checkpoint: Callable[[], None] = _ignore
) -> Verification:
    """Load the package with plain transformers in a new, isolated interpreter and compare its logits."""
    from safetensors.torch import load_file

    started = time.perf_counter()
    merged = (folder / "config.json").is_file()
    with tempfile.TemporaryDirectory(prefix="rmn-verify-") as scratch:
        request, out = Path(scratch) / "probes.json", Path(scratch) / "logits.safetensors"
        request.write_text(json.dumps(built["probes"]))
        script = _CHECK_SCRIPT % (_PROJECT_PACKAGES,)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        base = "" if merged else str(built["base_path"])
        stdout, stderr = Path(scratch) / "stdout.txt", Path(scratch) / "stderr.txt"
        with open(stdout, "w") as out_file, open(stderr, "w") as err_file:
            process = subprocess.Popen(
                [sys.executable, "-I", "-c", script, str(folder), base, str(request), str(out)],
                stdout=out_file,
                stderr=err_file,
                cwd=scratch,
                env=env,
            )
            try:
                _wait(process, checkpoint, VERIFY_TIMEOUT)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if process.returncode != 0:
            tail = stderr.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise PublishError(f"The package could not be loaded back with plain transformers: {tail[0]}")
        report = json.loads(stdout.read_text().strip().splitlines()[-1])
        logits = load_file(out)
    diffs, agree, positions = [], 0, 0
    for index, reference in enumerate(built["reference"]):
        got = logits[str(index)]
        diffs.append(float((got - reference).abs().max()))
        agree += int((got.argmax(-1) == reference.argmax(-1)).sum())
        positions += reference.shape[0]
    worst = max(diffs)
    tolerance = TOLERANCE[built["dtype"]]
    return Verification(
        passed=worst <= tolerance and not report["project_modules"],
        max_abs_diff=worst,
        tolerance=tolerance,
        top1_agreement=agree / positions,
        positions=positions,
        prompts=len(built["reference"]),
        loader=report["loader"],
        project_modules_imported=report["project_modules"],
        seconds=round(time.perf_counter() - started, 2),
    )


def _serve_command(name: str, federation: Federation, records: list[AdapterRecord]) -> str:
    rank = federation.rank
    max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
    return (
        f"vllm serve {federation.base.path} --enable-lora --lora-modules {name}=./{ADAPTER_DIR} "
        f"--max-lora-rank {max_rank}"
    )


def model_card(
    name: str,
    kind: str,
    federation: Federation,
    records: list[AdapterRecord],
    verification: Verification,
    dtype: str,
    licence: str,
    intended_use: str,
    serve: str | None,
) -> str:
    """The package's README.md: what it is, what made it, how well it did, how to run it."""
    lines = [
        "---",
        f"license: {json.dumps(licence or 'other')}",
        f"base_model: {json.dumps(federation.base.id)}",
        f"library_name: {'transformers' if kind == 'merged' else 'peft'}",
        "tags: [rmn-lora-console, lora" + (", merged" if kind == "merged" else "") + "]",
        "---",
        "",
        f"# {name}",
        "",
        (
            f"The base model {federation.base.id} with {len(records)} LoRA adapter(s) merged into its weights "
            f"({dtype}, safetensors)."
            if kind == "merged"
            else f"{len(records)} LoRA adapter(s) for {federation.base.id} in PEFT layout (not merged)."
        ),
        "",
        "## Intended use",
        "",
        intended_use.strip() or "Not stated by the publisher.",
        "",
        "## Base model",
        "",
        f"- id: {federation.base.id}",
        f"- architecture: {federation.base.architecture}, {federation.base.parameters:,} parameters",
        f"- fingerprint (sha256 of config, headers and weight samples): {federation.base.fingerprint}",
        "",
        "## Adapters",
        "",
    ]
    for member, record in zip(federation.members, records, strict=True):
        dataset = record.dataset
        lines += [
            f"### {record.label} (weight {member.weight:g})",
            "",
            f"- type: {record.adapter_type}, objective: {record.objective}, rank {record.lora_r}, "
            f"alpha {record.lora_alpha:g}, targets: {record.target_modules}",
            f"- dataset: {dataset.get('name', dataset.get('path', '?'))} (content hash {dataset.get('content_hash', 'unknown')})",
            f"- training config: `{json.dumps(record.config, sort_keys=True)}`",
            "- evaluation: " + (", ".join(f"{k} {v:.4g}" for k, v in sorted(record.metrics.items())) or "none"),
            "",
        ]
    lines += [
        "## Verification",
        "",
        f"Loaded in a fresh process with {verification.loader} (no console code imported): the largest logit "
        f"difference from the base model with the adapter applied by PEFT is {verification.max_abs_diff:.3g} "
        f"(tolerance {verification.tolerance:g}) over {verification.positions} positions of "
        f"{verification.prompts} prompts; the most likely next token agrees at "
        f"{verification.top1_agreement:.1%} of them.",
        "",
        "## How to run",
        "",
        "```bash",
        serve
        if serve
        else 'python -c "from transformers import AutoModelForCausalLM, AutoTokenizer; '
        "m = AutoModelForCausalLM.from_pretrained('.'); t = AutoTokenizer.from_pretrained('.')\"",
        "```",
        "",
        f"`{MANIFEST}` lists the SHA-256 of every file; check it before serving.",
        "",
    ]
    return "\n".join(lines)


def write_manifest(folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    files = {
        str(path.relative_to(folder)): {"sha256": sha256_file(path), "size": path.stat().st_size}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }
    manifest = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "files": files, **extra}
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def check_manifest(folder: Path) -> dict[str, Any]:
    """Every file of the package against its manifest; PackageCorrupt names the first file that differs."""
    manifest_file = folder / MANIFEST
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        listed = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise PackageCorrupt(f"{manifest_file} is missing or unreadable, so the package cannot be checked.") from None
    for relative, entry in listed.items():
        path = folder / relative
        if not path.is_file():
            raise PackageCorrupt(f"{relative} is listed in the manifest but missing from {folder}.")
        size = path.stat().st_size
        if size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise PackageCorrupt(
                f"{relative} does not match the manifest: SHA-256 {sha256_file(path)[:16]}… ({size:,} bytes), "
                f"expected {entry['sha256'][:16]}… ({entry['size']:,} bytes). The file was changed or damaged after "
                "publishing: restore it from the archive or publish again."
            )
    extra = [
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST and str(p.relative_to(folder)) not in listed
    ]
    if extra:
        raise PackageCorrupt(f"{', '.join(sorted(extra))} is not in the manifest; it was added after publishing.")
    return manifest


def _zip(folder: Path, archive: Path, name: str) -> None:
    """The download: weights stored (they do not compress), text deflated; one top folder named after the package."""
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                compress = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
                out.write(path, f"{name}/{path.relative_to(folder)}", compress_type=compress)


def list_packages(registry: Registry | None = None) -> list[PackageRecord]:
    """Every readable package, newest first (one broken record is skipped, not fatal)."""
    registry = registry or open_registry()
    records = []
    for folder in registry.packages.iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            record = _load(folder)
            if record is not None:
                records.append(record)
    return sorted(records, key=lambda r: r.created, reverse=True)


def get_package(name: str, registry: Registry | None = None) -> PackageRecord:
    registry = registry or open_registry()
    record = _load(registry.packages / validate_name(name, "package name"))
    if record is None:
        raise NotFound(f"No package named {name!r}. Publish one on the Publish page.")
    return record


def delete_package(name: str, registry: Registry | None = None) -> None:
    registry = registry or open_registry()
    record = get_package(name, registry)
    trash = registry.tmp / f"deleted-package-{uuid.uuid4().hex}"
    with locked(registry.locks, "packages"):
        record.path.parent.rename(trash)
        bump_generation(registry.packages)
    shutil.rmtree(trash, ignore_errors=True)


def _load(folder: Path) -> PackageRecord | None:
    try:
        record = load_json_cached(folder / RECORD, PackageRecord.model_validate)
    except (ValueError, OSError):
        return None
    if record is None or record.path.parent == folder:
        return record
    return record.model_copy(update={"path": folder / PACKAGE_DIR, "archive": folder / f"{record.name}.zip"})


__all__ = [
    "FederationError",
    "PackageCorrupt",
    "PackageRecord",
    "PublishError",
    "Verification",
    "check_manifest",
    "delete_package",
    "get_package",
    "list_packages",
    "publish",
]
