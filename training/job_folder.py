"""One training job's folder: the only module that knows its file names and the format of its log and metrics.

jobs/<id>/
- state.json     the JobState (written by the job manager at state changes only),
- metrics.jsonl  one JSON object per logging step (appended in one write),
- train.log      timestamped lines a person reads,
- checkpoints/   resumable Trainer checkpoints,
- adapter/       the finished adapter in PEFT layout,
- result.json    the TrainingResult,
- cancel         present while a cancel is requested of workers in other processes (the Ray backend),
- ray/           the Ray Train run's own files (the Ray backend).
The manager, the worker and any reader in another process go through `JobFolder`, so a restart, a second
server or a page all read what the worker wrote.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from registry.storage import append_line, atomic_write_json, atomic_write_text
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
    """Paths and readers/writers of `jobs/<id>/`.

    With several training processes on one job (Ray workers), one writes the log, metrics, result and adapter;
    the others open the folder with `writer=False`: they share the checkpoints and write nothing else.
    """

    path: Path
    writer: bool = True

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

    @property
    def cancel_file(self) -> Path:
        return self.path / "cancel"

    @property
    def ray_storage(self) -> Path:
        return self.path / "ray"

    def log(self, message: str) -> None:
        """One timestamped line in train.log, in one append."""
        if not self.writer:
            return
        append_line(self.log_file, f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {message}")

    def log_text(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace") if self.log_file.exists() else ""

    def append_metrics(self, row: dict[str, Any]) -> None:
        if self.writer:
            append_line(self.metrics_file, json.dumps(row))

    def reset_metrics(self) -> None:
        if self.writer:
            self.metrics_file.unlink(missing_ok=True)

    def trim_metrics(self, step: int) -> None:
        """On resume, drop progress lines written after the checkpoint, so the loss curve has no duplicate steps."""
        if not self.writer or not self.metrics_file.exists():
            return
        kept = [
            line
            for line in self.metrics_file.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        atomic_write_text(self.metrics_file, "".join(f"{line}\n" for line in kept))

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
        if self.writer:
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
