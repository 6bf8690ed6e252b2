"""The process's peak resident memory while one action runs, for tests of what a loader holds at once."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from training.safetensors_io import release_freed_memory

T = TypeVar("T")
_STATUS = Path("/proc/self/status")


def _field(name: str) -> int:
    line = next(line for line in _STATUS.read_text().splitlines() if line.startswith(name + ":"))
    return int(line.split()[1]) * 1024


def peak_rss_growth(action: Callable[[], T]) -> tuple[int, T]:
    """Bytes the peak resident set grew by while `action()` ran (the kernel's own high-water mark, Linux only),
    and what it returned. Freed memory is returned to the system first so earlier work does not hide the peak."""
    gc.collect()
    release_freed_memory()
    before = _field("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    result = action()
    return _field("VmHWM") - before, result
