"""One training job's folder: the only module that knows its file names and the format of its log and metrics.

jobs/<id>/
- state.json     the JobState (written by the job manager at state changes only),
- metrics.jsonl  one JSON object per logging step (appended in one write),
- train.log      timestamped lines a person reads,
- checkpoints/   resumable Trainer checkpoints,
- adapter/       the finished adapter in PEFT layout,
- result.json    the TrainingResult.
The manager, the worker and any reader in another process go through `JobFolder`, so a restart, a second
server or a page all read what the worker wrote.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from registry.storage import append_line, atomic_write_json
from training.base_models import BaseModelInfo

Status = Literal["completed", "cancelled"]


class TrainingResult(BaseModel):
    """What a finished or cancelled job reports back to the queue and to the adapter registry."""

    status: Status
    steps: int
    max_steps: int
    epoch: float
    adapter_path: Path | None
    checkpoint: Path | None
    metrics: dict[str, float]
    tokens: int
    tokens_per_second: float
    train_seconds: float
    device: str
    precision: str
    base_model: BaseModelInfo
    train_dataset: dict[str, Any]
    eval_dataset: dict[str, Any] | None


@dataclass(frozen=True)
class JobFolder:
    """Paths and readers/writers of `jobs/<id>/`."""

    path: Path

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def log_file(self) -> Path:
        return self.path / "train.log"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    def log(self, message: str) -> None:
        """One timestamped line in train.log, in one append."""
        append_line(self.log_file, f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {message}")

    def log_text(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace") if self.log_file.exists() else ""

    def append_metrics(self, row: dict[str, Any]) -> None:
        append_line(self.metrics_file, json.dumps(row))

    def metrics(self, tail: int | None = None) -> list[dict[str, Any]]:
        """The metrics lines, oldest first; a torn last line (a write cut by a crash) is skipped."""
        if not self.metrics_file.exists():
            return []
        rows = []
        for line in self.metrics_file.read_text(encoding="utf-8").splitlines()[-tail if tail else None :]:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def write_result(self, result: TrainingResult) -> None:
        atomic_write_json(self.result, result.model_dump(mode="json"))

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (one whose trainer_state.json was written)."""
        if not self.checkpoints.is_dir():
            return None
        done = [
            p
            for p in self.checkpoints.glob("checkpoint-*")
            if (p / "trainer_state.json").is_file() and p.name[11:].isdigit()
        ]
        return max(done, key=lambda p: int(p.name[11:]), default=None)
