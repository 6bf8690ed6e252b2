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


def test_walk_a_field_no_answer_got_right_still_shows_its_figure(registry, tmp_path, monkeypatch):
    """'Accuracy per RMIS field' drew nothing for a field at 0%: beside 100% bars, ad_group_id, cost, keyword and ts
    looked like fields with no data (issue 11 closing walk). Every bar says its accuracy and count."""
    import json

    from registry.datasets import write_records
    from registry.shapes import DatasetKind
    from services.evaluation import run_evaluation, wait_for_evaluation
    from tests.tiny_model import build_tiny_model

    monkeypatch.setenv("RMN_LORA_MODELS", str(tmp_path / "models"))
    base = build_tiny_model(tmp_path / "models" / "tiny-llama", seed=1717)
    rows = [
        {"prompt": "Map field 'cost_micros' with value '1250000' from Amazon to RMIS.", "reference": "cost: 1.25"},
        {"prompt": "Map field 'clicks' with value '43' from Amazon to RMIS.", "reference": "clicks: 43"},
    ]
    write_records("fields_eval", rows, DatasetKind.EVALUATION, origin="test")
    run = wait_for_evaluation(run_evaluation(str(base), "fields_eval", max_new_tokens=4), timeout=300)
    assert run.status == "completed", run.error
    assert {f: v["accuracy"] for f, v in run.metrics["field_accuracy"].items()} == {"cost": 0.0, "clicks": 0.0}
    app = AppTest.from_file(str(ROOT / "views" / "evaluations.py"), default_timeout=120).run()
    assert not app.exception, app.exception
    charts = [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]
    fields = next(c for c in charts if c["layout"]["title"]["text"] == "Accuracy per RMIS field")
    bars = fields["data"][0]
    assert list(bars["text"]) == ["0% of 1", "0% of 1"] and bars["textposition"] == "outside", bars
