"""Activity API: one timeline of what happened in the workspace, filtered and exported; a job's log."""

import csv
import io
import json
from datetime import datetime
from typing import Any

from registry.activity import read_activity
from registry.activity import recent_activity as _tail
from services.runtime import job_manager
from training.jobs import JobState

__all__ = ["activity_areas", "all_jobs", "export_activity", "job_log", "recent_activity"]
COLUMNS = ("ts", "kind", "message")


def recent_activity(
    limit: int | None = 20,
    *,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    text: str = "",
) -> list[dict[str, Any]]:
    """Events newest first; `kinds` holds kinds ('job.completed') or areas ('job'); `limit` None for all."""
    if not (kinds or since or until or text.strip()) and limit is not None:
        return _tail(limit)
    events = read_activity(kinds=kinds, since=since, until=until, text=text)
    return events if limit is None else events[:limit]


def activity_areas(events: list[dict[str, Any]] | None = None) -> list[str]:
    """The areas present in the log ('dataset', 'job', 'package', ...), for the kind filter."""
    events = read_activity() if events is None else events
    return sorted({str(e.get("kind", "")).split(".")[0] for e in events if e.get("kind")})


def export_activity(events: list[dict[str, Any]], fmt: str) -> bytes:
    """CSV (time, kind, message, then every detail as JSON) or JSONL, exactly the events given."""
    if fmt == "jsonl":
        return "".join(json.dumps(e, ensure_ascii=False, default=str) + "\n" for e in events).encode("utf-8")
    if fmt != "csv":
        raise ValueError(f"Unknown export format {fmt!r}; use 'csv' or 'jsonl'.")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*COLUMNS, "details"])
    for event in events:
        details = {k: v for k, v in event.items() if k not in COLUMNS}
        writer.writerow([event.get(c, "") for c in COLUMNS] + [json.dumps(details, ensure_ascii=False, default=str)])
    return buffer.getvalue().encode("utf-8")


def all_jobs() -> list[JobState]:
    """Every job of the job manager, training and publish, newest first (whose logs Activity shows)."""
    return job_manager().all_jobs(kind=None)


def job_log(job_id: str, search: str = "") -> list[str]:
    """A job's log lines (every line containing `search`, case-insensitive, when given)."""
    lines = job_manager().log_text(job_id).splitlines()
    needle = search.strip().casefold()
    return [line for line in lines if needle in line.casefold()] if needle else lines
