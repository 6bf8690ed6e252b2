"""The Evaluations and Analytics & Monitoring pages render (AppTest) on an empty registry and with request-log data."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["evaluations.py", "training_metrics.py", "performance.py", "system_health.py"]


@pytest.mark.parametrize("name", PAGES)
def test_page_renders_without_an_exception(registry, name):
    from federation.request_log import RequestRecord, request_log

    log = request_log()
    log.append(RequestRecord(target="amazon_v1 v1", adapters=["amazon_v1 v1"], completion_tokens=12, latency_ms=300))
    log.append(RequestRecord(target="amazon_v1 v1", ok=False, error="InferenceError: gone", latency_ms=5))
    log.flush()
    app = AppTest.from_file(str(ROOT / "views" / name), default_timeout=60).run()
    assert not app.exception, app.exception
    if name == "performance.py":
        assert "amazon_v1 v1" in app.dataframe[0].value["Target"].tolist()
    if name == "system_health.py":
        assert [m.label for m in app.metric][:4] == ["CPU", "Memory", "Registry disk", "This server (RSS)"]
