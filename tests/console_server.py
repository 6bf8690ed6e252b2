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
SERVER_START_TIMEOUT_S = 60


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
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "RMN_LORA_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        if models is not None:
            env["RMN_LORA_MODELS"] = str(models)
        command = [
            sys.executable, "-m", "streamlit", "run", "serve.py",
            "--server.address", "127.0.0.1",
            "--server.port", str(self.port),
            "--server.headless", "true",
            "--server.fileWatcherType", "none",
            "--browser.gatherUsageStats", "false",
            *args,
        ]  # fmt: skip
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        """Poll Streamlit's health endpoint; fail with the server's own output if it dies or never answers."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text(errors="replace")
                pytest.fail(f"streamlit exited with {self.process.returncode} before answering:\n{log}")
            try:
                if httpx.get(f"{self.url}/_stcore/health", timeout=2).text.strip() == "ok":
                    return
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
