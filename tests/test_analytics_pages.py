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
    app = AppTest.from_file(str(ROOT / "views" / name), default_timeout=120).run()
    assert not app.exception, app.exception
    if name == "performance.py":
        assert "amazon_v1 v1" in app.dataframe[0].value["Target"].tolist()
    if name == "system_health.py":
        assert [m.label for m in app.metric][:4] == ["CPU", "Memory", "Registry disk", "This server (RSS)"]


def test_the_evaluation_form_offers_evaluation_sets_first(registry):
    """The library lists newest first; a DPO set imported after the evaluation sets must not become the form's
    default dataset (the demo imports its DPO set last)."""
    from registry.datasets import write_records
    from registry.shapes import DatasetKind

    pair = {"prompt": "Say hi.", "chosen": "Hi.", "rejected": "No."}
    write_records("amazon_eval", [{"prompt": "Say hi.", "reference": "Hi."}], DatasetKind.EVALUATION, origin="test")
    write_records("amazon_sft", [{"instruction": "Say hi.", "output": "Hi."}], DatasetKind.ALPACA, origin="test")
    write_records("policy_dpo", [pair], DatasetKind.DPO, origin="test")
    app = AppTest.from_file(str(ROOT / "views" / "evaluations.py"), default_timeout=60).run()
    assert not app.exception, app.exception
    options = app.selectbox(key="eval_dataset").options
    assert [o.split(" · ")[0] for o in options] == ["amazon_eval", "policy_dpo", "amazon_sft"]
    assert app.selectbox(key="eval_dataset").value.startswith("amazon_eval")
