"""One `streamlit run serve.py` (app.py plus the session routes) on loopback, for the browser tests: the shared
console, servers a test restarts, and those with a registry or secrets of their own (sign-in, single sign-on)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVER_START_TIMEOUT_S = 120  # generous: a fresh server imports pandas and more on a possibly loaded machine
PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ConsoleServer:
    """A server against the registry `home` (and the base models in `models`, when given), on `port` or a free one,
    with extra `streamlit run` options (e.g. `--secrets.files`); stop() ends it as SIGTERM would."""

    def __init__(
        self, home: Path, models: Path | None, log_path: Path, *, port: int | None = None, args: Sequence[str] = ()
    ):
        self.log_path = log_path
        self.env = {
            **os.environ,
            "RMN_LORA_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if models is not None:
            self.env["RMN_LORA_MODELS"] = str(models)
        self.args = args
        # A free port can be taken by another socket between free_port() and streamlit's bind (it then exits with
        # "Port N is not available"): another free port is tried, unless the caller asked for this one.
        for attempt in range(1 if port else PORT_ATTEMPTS):
            self._start(port or free_port())
            try:
                if self._wait_healthy(last_attempt=bool(port) or attempt == PORT_ATTEMPTS - 1):
                    return
            except BaseException:
                self.stop()
                raise

    def _start(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "streamlit", "run", "serve.py",
            "--server.address", "127.0.0.1",
            "--server.port", str(self.port),
            "--server.headless", "true",
            "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false",
            *self.args,
        ]  # fmt: skip
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def _wait_healthy(self, last_attempt: bool) -> bool:
        """Poll Streamlit's health endpoint; fail with the server's own output if it dies or never answers. False
        when it exited because its port was taken meanwhile and another port may be tried."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_bytes()[self.log_start :].decode(errors="replace")
                if "is not available" in log and not last_attempt:
                    return False
                pytest.fail(f"streamlit exited with {self.process.returncode} before answering:\n{log}")
            try:
                if httpx.get(f"{self.url}/_stcore/health", timeout=2).text.strip() == "ok":
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        log = self.log_path.read_text(errors="replace")
        pytest.fail(f"streamlit did not answer {self.url}/_stcore/health within {SERVER_START_TIMEOUT_S} s:\n{log}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
