"""The inference request log: one JSON line per generation the engine serves, whoever asked for it.

Generation threads only put a record on a queue (no file I/O, no lock held across a write); one writer thread per
log drains the queue and appends whole batches of lines, so logging costs a generation almost nothing. The file
rotates by size (`requests.jsonl` -> `requests.1.jsonl` ... `requests.<keep>.jsonl`), so it never fills the disk.
Readers (the Performance Dashboard, the HTTP API) read every kept file, oldest first; a torn line is skipped.
"""

import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from registry.layout import Registry
from registry.settings import get_settings

LOG_NAME = "requests"  # the files' stem; the folder is the registry's `requests/`
MAX_BYTES = 8 * 1024 * 1024
KEEP = 4

Caller = Literal["playground", "federation", "evaluation", "api", "bench", "test"]


class RequestRecord(BaseModel):
    """One served generation: what answered, what it cost, and whether it worked."""

    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    target: str = Field(description="The base model id, an adapter label or a federation id.")
    adapters: list[str] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_token_ms: float | None = None
    latency_ms: float = 0.0
    ok: bool = True
    error: str | None = None
    caller: str = "api"


class RequestLog:
    """An append-only, size-rotated JSONL log fed through a queue by a single writer thread."""

    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP):
        self.folder, self.max_bytes, self.keep = folder, max_bytes, keep
        self._queue: queue.SimpleQueue[str | threading.Event] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._drain, name=f"request-log-{folder.parent.name}", daemon=True)
        self._writer.start()

    @property
    def current(self) -> Path:
        return self.folder / f"{LOG_NAME}.jsonl"

    def files(self) -> list[Path]:
        """Every kept file, oldest first."""
        rotated = [self.folder / f"{LOG_NAME}.{index}.jsonl" for index in range(self.keep, 0, -1)]
        return [path for path in [*rotated, self.current] if path.is_file()]

    def append(self, record: RequestRecord) -> None:
        """Never blocks on disk: the line is written by the writer thread."""
        self._queue.put(record.model_dump_json())

    def flush(self, timeout: float = 120.0) -> bool:
        """Wait until everything appended so far is on disk (tests, readers that want the newest lines); False if
        the writer did not get there within `timeout` (generous: on a loaded machine it may wait its turn for a
        while, and a reader that went on early would read an incomplete log)."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def records(self, since: datetime | None = None) -> Iterator[RequestRecord]:
        for path in self.files():
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:  # rotated away between listing and reading
                continue
            for line in lines:
                try:
                    record = RequestRecord.model_validate_json(line)
                except ValidationError:
                    continue
                if since is None or record.time >= since:
                    yield record

    def _drain(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = [item for item in items if isinstance(item, str)]
            if lines:
                try:
                    self._write(lines)
                except OSError:  # a full or vanished disk must not kill the writer; the lines are lost, not the log
                    pass
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()

    def _write(self, lines: list[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.current.is_file() and self.current.stat().st_size >= self.max_bytes:
            self._rotate()
        with open(self.current, "a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))

    def _rotate(self) -> None:
        oldest = self.folder / f"{LOG_NAME}.{self.keep}.jsonl"
        oldest.unlink(missing_ok=True)
        for index in range(self.keep - 1, 0, -1):
            path = self.folder / f"{LOG_NAME}.{index}.jsonl"
            if path.is_file():
                path.replace(self.folder / f"{LOG_NAME}.{index + 1}.jsonl")
        self.current.replace(self.folder / f"{LOG_NAME}.1.jsonl")


_logs: dict[Path, RequestLog] = {}
_logs_lock = threading.Lock()


def request_log(home: Path | None = None) -> RequestLog:
    """The log of the current registry (`RMN_LORA_HOME` is read on every call, as the job manager does)."""
    settings = get_settings()
    folder = Registry(root=home or settings.home, settings=settings).requests
    with _logs_lock:
        if folder not in _logs:
            _logs[folder] = RequestLog(folder)
        return _logs[folder]


def enabled() -> bool:
    """`RMN_LORA_REQUEST_LOG=0` turns logging off (the bench compares both)."""
    return get_settings().request_log
