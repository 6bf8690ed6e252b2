"""Atomic files, cross-process locks, names and hashes: what every registry write stands on."""

import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock

from registry.errors import InvalidName

T = TypeVar("T")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RESERVED = {"con", "prn", "aux", "nul"}


def validate_name(name: str, what: str = "name") -> str:
    """Refuse names that could leave their folder or be unreadable on another OS."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidName(f"The {what} is empty. Use letters, digits, '_', '-' or '.'.")
    if name != name.strip():
        raise InvalidName(f"The {what} {name!r} starts or ends with spaces.")
    if "/" in name or "\\" in name or "\x00" in name:
        raise InvalidName(f"The {what} {name!r} contains a path separator; use a plain name like 'amazon_sft'.")
    if ".." in name:
        raise InvalidName(f"The {what} {name!r} contains '..'; use a plain name like 'amazon_sft'.")
    if len(name) > 64:
        raise InvalidName(f"The {what} is {len(name)} characters long; at most 64 are allowed.")
    if not NAME_RE.match(name) or name.lower() in _RESERVED:
        raise InvalidName(
            f"The {what} {name!r} is not allowed: start with a letter or digit, then use only "
            "letters, digits, '_', '-' or '.'."
        )
    return name


def suggest_name(text: str) -> str:
    """A valid registry name derived from free text such as an uploaded file name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-").replace("..", ".")
    return (stem or "dataset")[:64]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers see the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


_parsed: dict[tuple[Path, Callable[[Any], Any]], tuple[int, Any]] = {}


def load_json_cached(path: Path, parse: Callable[[Any], T]) -> T | None:
    """`parse(read_json(path))`, reused while the file's mtime is unchanged (our writes replace files, so it moves);
    None when the file does not exist. Listing 1,000 records then costs 1,000 stats, not 1,000 parses."""
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    cached = _parsed.get((path, parse))
    if cached and cached[0] == mtime:
        return cached[1]
    value = parse(read_json(path))
    _parsed[(path, parse)] = (mtime, value)
    return value


GENERATION_FILE = ".generation"


def bump_generation(folder: Path) -> None:
    """Mark `folder` as changed for every process's list cache (call it under the folder's lock, after a write)."""
    atomic_write_text(folder / GENERATION_FILE, uuid.uuid4().hex)


def generation(folder: Path) -> tuple[int, str]:
    """A cheap stamp of a registry folder: its mtime catches entries added or removed by hand, the stamp every write of ours."""
    stamp = folder / GENERATION_FILE
    return folder.stat().st_mtime_ns, stamp.read_text() if stamp.exists() else ""


@contextmanager
def locked(lock_dir: Path, name: str, timeout: float = 60.0) -> Iterator[None]:
    """Hold a lock that excludes other threads and other processes on the same registry."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_dir / f"{name}.lock", timeout=timeout, thread_local=False):
        yield


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def append_line(path: Path, line: str) -> None:
    """Append one line in a single write, so concurrent appenders under a lock never interleave."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())
