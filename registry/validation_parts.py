"""Worker processes that validate the parts of one large file at once (see registry.validation).

Each worker is a fresh interpreter (`python -m registry.validation_parts`), never a fork of the
console's server: the server's training and inference threads hold locks (torch, malloc, OpenMP)
that a forked child could inherit held, and under Streamlit `__main__` is the page script, which
multiprocessing's spawn and forkserver start methods would run again in every child. The workers
share one hash seed, so the duplicate keys computed in different parts can be compared.
Tasks and results cross a pipe as pickles between this module and its own children only.
"""

import atexit
import os
import pickle
import secrets
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


class PartsFailed(RuntimeError):
    """A worker died or could not start; the caller scans the file in-process instead."""


class PartWorkers:
    """`count` worker processes, started once and kept; one file's parts at a time."""

    def __init__(self, count: int) -> None:
        env = {
            **os.environ,
            "PYTHONHASHSEED": str(secrets.randbelow(2**32)),
            "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
        }
        self.count = count
        self._lock = threading.Lock()
        self._processes = [
            subprocess.Popen(
                [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=REPO_ROOT
            )
            for _ in range(count)
        ]
        atexit.register(self.close)

    def run(self, tasks: list[tuple[Any, ...]]) -> list[Any]:
        """`registry.validation.scan_part(*task)` for each task, task i on worker i; results in task order."""
        if len(tasks) > self.count:
            raise ValueError(f"{len(tasks)} tasks for {self.count} workers")
        with self._lock:
            workers = self._processes[: len(tasks)]
            try:
                for process, task in zip(workers, tasks, strict=True):
                    pickle.dump(task, process.stdin)  # type: ignore[arg-type]
                    process.stdin.flush()  # type: ignore[union-attr]
                replies = [pickle.load(process.stdout) for process in workers]  # type: ignore[arg-type]
            except (OSError, EOFError, pickle.UnpicklingError) as error:
                raise PartsFailed(f"a validation worker stopped: {error}") from error
        failures = [message for ok, message in replies if not ok]
        if failures:
            raise PartsFailed(f"a validation worker failed: {failures[0]}")
        return [value for _, value in replies]

    def close(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.stdin.close()  # type: ignore[union-attr]
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()


def serve() -> None:
    """Worker loop: answer the parent's tasks until its end of the pipe closes."""
    from registry import validation

    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the replies
    requests = sys.stdin.buffer
    while True:
        try:
            task = pickle.load(requests)
        except EOFError:
            return
        try:
            reply = (True, validation.scan_part(*task))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which scans in-process instead
            reply = (False, f"{type(error).__name__}: {error}")
        pickle.dump(reply, replies)
        replies.flush()


if __name__ == "__main__":
    serve()
