"""One evaluation run's folder: the only module that knows its file names.

evaluations/<id>/
- config.json   the RunConfig (target, dataset, metrics, limit, decoding), written once at submit,
- state.json    the RunState (status, progress, times, error), written at state changes and after each batch,
- rows.jsonl    one scored example per line, appended a batch at a time (a restart resumes after the last one),
- metrics.json  the run's metrics, written when it completes.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.storage import atomic_write_json, read_json


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def rows_file(self) -> Path:
        return self.path / "rows.jsonl"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    def append_rows(self, rows: list[dict[str, Any]]) -> None:
        with open(self.rows_file, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    def rows(self) -> list[dict[str, Any]]:
        """The scored rows, in example order; a torn last line (a write cut by a crash) is dropped."""
        if not self.rows_file.is_file():
            return []
        rows = []
        for line in self.rows_file.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def truncate_rows(self, count: int) -> None:
        """Keep exactly the first `count` rows (a resumed run rewrites a half-written tail)."""
        rows = self.rows()[:count]
        self.rows_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.metrics_file, metrics)

    def metrics(self) -> dict[str, Any] | None:
        return read_json(self.metrics_file) if self.metrics_file.is_file() else None
