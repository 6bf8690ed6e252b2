"""Atomic files, cross-process locks, names and hashes: what every registry write stands on."""

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from registry.errors import CorruptFile, InvalidName

T = TypeVar("T")
MAX_NAME_LENGTH = 64
NAME_RE = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME_LENGTH - 1}}}$")
# Windows device names, with or without an extension ("con.jsonl" and "COM1" are devices there, not files).
_RESERVED = {"con", "prn", "aux", "nul", "conin$", "conout$"} | {f"{d}{n}" for d in ("com", "lpt") for n in range(10)}


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
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"The {what} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed.")
    if name.split(".")[0].lower() in _RESERVED:
        raise InvalidName(
            f"The {what} {name!r} is a device name on Windows (CON, PRN, AUX, NUL, COM0-9, LPT0-9); choose another."
        )
    if name.endswith("."):
        raise InvalidName(f"The {what} {name!r} ends with '.', which Windows drops; remove it.")
    if not NAME_RE.match(name):
        raise InvalidName(
            f"The {what} {name!r} is not allowed: start with a letter or digit, then use only "
            "letters, digits, '_', '-' or '.'."
        )
    return name


def case_clash(folder: Path, name: str) -> str | None:
    """An existing entry of `folder` whose name differs from `name` only in case: on a case-insensitive filesystem
    (macOS, Windows, a copied registry) the two would merge, so the new one is refused."""
    if not folder.is_dir():
        return None
    wanted = name.casefold()
    return next((e.name for e in folder.iterdir() if e.name != name and e.name.casefold() == wanted), None)


def suggest_name(text: str) -> str:
    """A valid registry name derived from free text such as an uploaded file name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-").replace("..", ".")
    return (stem or "dataset")[:MAX_NAME_LENGTH]


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


def read_json(path: Path, fix: str | None = None) -> Any:
    """The parsed file; a truncated, non-UTF-8 or absurdly nested one raises CorruptFile naming it."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise CorruptFile(path, _reason(error), fix) from None


def parse_checked(path: Path, parse: Callable[[Any], T], payload: Any, fix: str | None = None) -> T:
    """`parse(payload)`, where a payload of the wrong shape (a hand edit, an old format) is a CorruptFile."""
    try:
        return parse(payload)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise CorruptFile(path, _reason(error), fix) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _reason(error: BaseException) -> str:
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8 text"
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first[:200]


_parsed: dict[tuple[Path, Callable[[Any], Any]], tuple[tuple[int, int, int], Any]] = {}


def file_stamp(path: Path) -> tuple[int, int, int]:
    """What changes when a file is rewritten: mtime, size and inode (our writes replace files, so the inode moves
    even when two writes land in the same tick of a filesystem with coarse timestamps). FileNotFoundError if none."""
    info = path.stat()
    return info.st_mtime_ns, info.st_size, info.st_ino


def load_json_cached(path: Path, parse: Callable[[Any], T], fix: str | None = None) -> T | None:
    """`parse(read_json(path))`, reused while the file is unchanged (`file_stamp`); None when the file does not
    exist, CorruptFile when it cannot be read. Listing 1,000 records then costs 1,000 stats, not 1,000 parses."""
    try:
        stamp = file_stamp(path)
    except FileNotFoundError:
        return None
    cached = _parsed.get((path, parse))
    if cached and cached[0] == stamp:
        return cached[1]
    value = parse_checked(path, parse, read_json(path, fix), fix)
    _parsed[(path, parse)] = (stamp, value)
    return value


GENERATION_FILE = ".generation"


def bump_generation(folder: Path) -> None:
    """Mark `folder` as changed for every process's list cache (call it under the folder's lock, after a write)."""
    atomic_write_text(folder / GENERATION_FILE, uuid.uuid4().hex)


def generation(folder: Path) -> tuple[int, str]:
    """A cheap stamp of a registry folder: its mtime catches entries added or removed by hand, the stamp every write of ours."""
    stamp = folder / GENERATION_FILE
    try:  # bytes, compared not parsed: a garbage stamp only means "changed"
        return folder.stat().st_mtime_ns, stamp.read_bytes()[:64].hex()
    except (FileNotFoundError, IsADirectoryError):
        return folder.stat().st_mtime_ns, ""


def list_stamp(folder: Path, paths: list[Path]) -> tuple[Any, ...]:
    """The folder's generation plus each listed file's mtime: a hand edit, a repair or a corruption of one entry is
    seen by the next listing (one stat per entry), not only our own writes."""
    mtimes = []
    for path in paths:
        try:
            mtimes.append(path.stat().st_mtime_ns)
        except OSError:
            mtimes.append(None)
    return generation(folder), tuple(mtimes)


def contained(root: Path, path: Path) -> Path:
    """`path`, refused when it (or a symlink on the way) leads outside the registry `root`: a registry file is
    never a door to the rest of the disk."""
    if path.is_symlink() or not path.resolve().is_relative_to(root.resolve()):
        raise CorruptFile(
            path, "it is a link that leads outside the registry", f"Remove the link ('{path}') and import the file."
        )
    return path


def _scratch_lock(locks: Path, entry: Path) -> Path:
    return locks / f"scratch-{entry.name}.lock"


@contextmanager
def claimed(locks: Path, entry: Path) -> Iterator[Path]:
    """Work in scratch folder `entry` under a lock held for as long as the work runs, and remove the folder on any
    exit. A process killed on the way (SIGKILL: no exit code runs) frees the lock, so the next start-up's `prune`
    removes what it left at once, whatever its age, and never touches a folder still being worked in."""
    locks.mkdir(parents=True, exist_ok=True)
    lock_path = _scratch_lock(locks, entry)
    with FileLock(lock_path, timeout=0, thread_local=False):
        try:
            yield entry
        finally:
            shutil.rmtree(entry, ignore_errors=True)
            lock_path.unlink(missing_ok=True)


def _abandoned(lock_path: Path) -> bool | None:
    """True when `lock_path` names a claim no process holds any more, False while one does, None if never claimed."""
    if not lock_path.exists():
        return None
    try:
        with FileLock(lock_path, timeout=0, thread_local=False):
            return True
    except Timeout:
        return False


def prune(folder: Path, max_age_s: float, locks: Path | None = None) -> int:
    """Remove entries of a scratch folder untouched for `max_age_s`, and at once those `claimed` by a process that
    died (their lock in `locks` is free); an entry still claimed stays. Links are removed, never followed. Returns
    how many went."""
    if not folder.is_dir():
        return 0
    cutoff = time.time() - max_age_s
    removed = 0
    for entry in folder.iterdir():
        try:
            info = entry.lstat()
        except FileNotFoundError:
            continue
        claim = _abandoned(_scratch_lock(locks, entry)) if locks is not None else None
        if claim is False or (claim is None and info.st_mtime >= cutoff):
            continue
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        if claim:
            _scratch_lock(locks, entry).unlink(missing_ok=True)
        removed += 1
    return removed


def load_each(paths: Iterable[Path], load: Callable[[Path], T | None]) -> tuple[list[T], list[CorruptFile]]:
    """Load every entry of a list; an unreadable one is set aside with its error so the rest still shows."""
    loaded: list[T] = []
    broken: list[CorruptFile] = []
    for path in paths:
        try:
            value = load(path)
        except CorruptFile as error:
            broken.append(error)
            continue
        if value is not None:
            loaded.append(value)
    return loaded, broken


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
