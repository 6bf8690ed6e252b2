"""Analytics & Monitoring API: the machine's health, the request log, adapter performance, training metrics, cost."""

from datetime import UTC, datetime, timedelta
from typing import Any

from evaluation.cost import run_cost
from evaluation.health import HealthSample, HealthTrend, trend
from evaluation.performance import TargetPerformance, by_target, timeline
from federation.request_log import RequestRecord, request_log
from registry.layout import open_registry
from services.runtime import evaluation_manager, health_sampler, job_manager
from training.adapters import list_adapters

__all__ = [
    "HealthSample",
    "HealthTrend",
    "RequestRecord",
    "TargetPerformance",
    "adapter_performance",
    "health_history",
    "health_trend",
    "job_costs",
    "prices",
    "request_records",
    "request_timeline",
    "system_health",
    "training_curves",
]


def system_health() -> HealthSample:
    """CPU, memory, the registry's disk, this server's RSS and every NVIDIA GPU (or why there is none), now."""
    return health_sampler().latest()


def health_history() -> list[HealthSample]:
    """About the last hour of samples, oldest first."""
    return health_sampler().history()


def health_trend(max_points: int = 120) -> HealthTrend:
    """About the last hour as trend lines of at most `max_points` (means of consecutive samples), oldest first."""
    return trend(health_sampler().history(), max_points)


def request_records(since: datetime | None = None, hours: float | None = None) -> list[RequestRecord]:
    """The request log's records (oldest first), from `since` or the last `hours`."""
    if since is None and hours is not None:
        since = datetime.now(UTC) - timedelta(hours=hours)
    return list(request_log().records(since))


def request_timeline(hours: float = 24, bucket_seconds: int = 60) -> list[dict[str, Any]]:
    return timeline(request_records(hours=hours), bucket_seconds)


def adapter_performance(hours: float | None = None) -> list[TargetPerformance]:
    """Seed 000's adapter table: accuracy (latest evaluation), latency, size, requests, error rate, tokens/s, cost."""
    sizes = {record.label: record.size_bytes for record in list_adapters()}
    return by_target(request_records(hours=hours), evaluation_manager().all_runs(), open_registry().settings, sizes)


def prices() -> dict[str, float]:
    """The prices in force (settings, overridable by environment), USD per device-hour."""
    settings = open_registry().settings
    return {"cpu_hour": settings.cpu_hour_price, "gpu_hour": settings.gpu_hour_price}


def job_costs() -> list[dict[str, Any]]:
    """Each finished training job's wall time, device and cost, and each evaluation's, newest first."""
    manager = job_manager()
    rows = []
    for job in manager.all_jobs():
        if job.started is None or job.finished is None:
            continue
        seconds = (job.finished - job.started).total_seconds()
        device = "cuda" if _on_gpu(manager, job.id) else "cpu"
        rows.append(
            {
                "kind": "training",
                "id": job.id,
                "what": job.config.adapter_name,
                "status": job.status.value,
                "finished": job.finished,
                "seconds": round(seconds, 1),
                "device": device,
                "cost_usd": run_cost(seconds, device=device),
            }
        )
    for run in evaluation_manager().all_runs():
        if run.finished is None:
            continue
        rows.append(
            {
                "kind": "evaluation",
                "id": run.id,
                "what": run.label,
                "status": run.status.value,
                "finished": run.finished,
                "seconds": round(run.seconds, 1),
                "device": "cpu",
                "cost_usd": run.cost if run.cost is not None else run_cost(run.seconds),
            }
        )
    return sorted(rows, key=lambda row: row["finished"], reverse=True)


def _on_gpu(manager: Any, job_id: str) -> bool:
    from registry.storage import read_json

    result = manager.folder(job_id).result
    return result.is_file() and str(read_json(result).get("device", "cpu")).startswith("cuda")


def training_curves(job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each job's metrics lines (loss, eval loss, learning rate, tokens/s by step), for overlaid curves."""
    manager = job_manager()
    return {job_id: manager.metrics(job_id) for job_id in job_ids}
