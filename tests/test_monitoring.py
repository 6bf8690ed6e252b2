"""System health (with and without an NVIDIA GPU), request-log aggregates and cost."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_system_health_renders_on_this_machine(registry):
    from services.monitoring import health_history, system_health

    health = system_health()
    assert health.cpu_count >= 1 and health.memory_total_bytes > 0 and health.disk_total_bytes > 0
    assert 0 <= health.memory_percent <= 100 and health.process_rss_bytes > 10_000_000
    if not health.gpus:
        assert health.gpu_status.startswith("no NVIDIA GPU")
    assert health_history()[-1] == health


def test_nvml_path_reads_every_device():
    """Runs wherever NVML finds a device; skips only when it finds none."""
    from evaluation.health import read_gpus

    gpus, status = read_gpus()
    if status.startswith("no NVIDIA GPU"):
        pytest.skip(status)
    assert status == "ok" and gpus
    for gpu in gpus:
        assert gpu.name and 0 < gpu.memory_total_bytes and 0 <= gpu.memory_used_bytes <= gpu.memory_total_bytes
        assert gpu.utilization_percent is None or 0 <= gpu.utilization_percent <= 100


def test_sampler_keeps_a_bounded_history(tmp_path):
    from evaluation.health import HealthSampler

    sampler = HealthSampler(tmp_path, interval=0.05, history=0.2)
    try:
        # until the first sample has been dropped for a newer one (generous: a loaded machine samples late)
        deadline = datetime.now(UTC) + timedelta(seconds=120)
        while not sampler.history() and datetime.now(UTC) < deadline:
            sampler._stop.wait(0.05)
        assert sampler.history(), "the sampler took no sample"
        first = sampler.history()[0]
        while first in sampler.history() and datetime.now(UTC) < deadline:
            sampler._stop.wait(0.05)
        history = sampler.history()
        assert first not in history, "the sampler took no new samples"
        assert len(history) == 4  # 0.2 s of history at 0.05 s
        assert [s.time for s in history] == sorted(s.time for s in history)
    finally:
        sampler.stop()


def _sample(cpu: float, rss_mb: float, gpu: float | None = None):
    from evaluation.health import GpuSample, HealthSample

    gpus = [GpuSample(index=0, name="g", utilization_percent=gpu, memory_used_bytes=1, memory_total_bytes=2)]
    return HealthSample(
        cpu_percent=cpu, cpu_count=2, memory_used_bytes=1, memory_total_bytes=2, memory_percent=cpu / 2,
        disk_used_bytes=1, disk_total_bytes=2, disk_percent=50, process_rss_bytes=int(rss_mb * 2**20),
        gpus=gpus, gpu_status="ok",
    )  # fmt: skip


def test_the_trend_keeps_each_sample_up_to_its_limit_and_averages_consecutive_samples_beyond():
    """System Health draws the last hour (720 samples) as lines in its cards: at most 120 points, each the mean of
    consecutive samples, oldest first; a GPU reading that is missing counts as no reading, not as 0."""
    from evaluation.health import trend

    few = trend([_sample(10, 100), _sample(30, 300)], max_points=120)
    assert few.cpu_percent == [10, 30] and few.memory_percent == [5, 15] and few.process_rss_mb == [100, 300]
    hour = [_sample(float(i % 7), 200 + i, gpu=None if i % 6 == 5 else 50.0) for i in range(720)]
    lines = trend(hour, max_points=120)
    assert len(lines.cpu_percent) == len(lines.process_rss_mb) == len(lines.gpu_percent[0]) == 120
    assert lines.cpu_percent[0] == sum(i % 7 for i in range(6)) / 6 and lines.process_rss_mb[-1] == 200 + 716.5
    assert lines.gpu_percent[0] == [50.0] * 120  # five readings and one missing per point
    odd = trend(hour[:121], max_points=120)  # 121 samples: points of 2, the last one alone
    assert len(odd.cpu_percent) == 61 and odd.cpu_percent[-1] == 120 % 7


def test_system_health_draws_the_last_hour_in_its_cards_without_plotly(registry):
    """Two Plotly charts cost a new browser tab 2-4 s of main-thread time (Plotly's 4.7 MB bundle, Chromium profile
    at load 8-15) before they showed; the cards' own lines (Streamlit's metric chart) draw the same history."""
    from streamlit.testing.v1 import AppTest

    from services.monitoring import health_history, system_health

    system_health()  # starts the sampler (or reads the running one)
    deadline = datetime.now(UTC) + timedelta(seconds=120)  # a sample every 5 s, later on a loaded machine
    while len(health_history()) < 2 and datetime.now(UTC) < deadline:
        time.sleep(0.2)
    app = AppTest.from_file(str(ROOT / "views" / "system_health.py"), default_timeout=120).run()
    assert not app.exception, app.exception
    cards = {metric.label: list(metric.proto.chart_data) for metric in app.metric}
    assert len(cards["CPU"]) >= 2 and len(cards["Memory"]) >= 2 and len(cards["This server (RSS)"]) >= 2
    assert cards["This server (RSS)"][-1] > 10  # MB
    assert not app.get("plotly_chart")
    assert "at most 120 points" in " ".join(caption.value for caption in app.caption)


def _record(target, ok=True, tokens=10, latency=100.0, minutes_ago=0, adapters=()):
    from federation.request_log import RequestRecord

    return RequestRecord(
        time=datetime(2026, 12, 6, 12, 0, tzinfo=UTC) - timedelta(minutes=minutes_ago),
        target=target,
        adapters=list(adapters),
        completion_tokens=tokens if ok else 0,
        latency_ms=latency,
        ok=ok,
        error=None if ok else "InferenceError: boom",
        caller="test",
    )


def test_performance_rows_and_cost_by_hand(registry):
    from evaluation.performance import by_target, timeline

    settings = registry.settings.model_copy(update={"cpu_hour_price": 3.6})  # 0.001 USD per second
    records = [
        _record("amazon_v1 v1", tokens=20, latency=1000, adapters=["amazon_v1 v1"]),
        _record("amazon_v1 v1", tokens=30, latency=3000, adapters=["amazon_v1 v1"]),
        _record("amazon_v1 v1", ok=False, latency=1000, adapters=["amazon_v1 v1"], minutes_ago=2),
        _record("base", tokens=5, latency=500),
    ]
    rows = by_target(records, [], settings, sizes={"amazon_v1 v1": 1234})
    adapter = rows[0]
    assert (adapter.target, adapter.requests, adapter.errors) == ("amazon_v1 v1", 3, 1)
    assert adapter.error_rate == pytest.approx(1 / 3)
    assert adapter.completion_tokens == 50
    assert adapter.tokens_per_second == pytest.approx(50 / 5.0)  # 50 tokens over 5 s of latency, failures included
    assert adapter.cost_usd == pytest.approx(0.005)
    assert adapter.cost_per_1k_tokens == pytest.approx(0.005 / 50 * 1000)
    assert adapter.p50_latency_ms == pytest.approx(2000) and adapter.size_bytes == 1234
    buckets = timeline(records)
    assert [(b["requests"], b["errors"]) for b in buckets] == [(1, 1), (3, 0)]


def test_prices_come_from_the_settings_with_env_overrides(registry, monkeypatch):
    from evaluation.cost import cost_per_1k_tokens, run_cost
    from services.monitoring import prices

    assert prices() == {"cpu_hour": 0.10, "gpu_hour": 1.20}
    monkeypatch.setenv("RMN_LORA_CPU_HOUR_PRICE", "0.36")
    assert prices()["cpu_hour"] == 0.36
    assert run_cost(3600) == pytest.approx(0.36)
    assert run_cost(1800, device="cuda", devices=2) == pytest.approx(1.20)
    assert cost_per_1k_tokens(10, 0) is None
