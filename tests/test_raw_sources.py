"""Raw sample sources: deterministic bytes, realistic content, filters, export, and the Data Browser page."""

import io
import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from conftest import snapshot
from streamlit.testing.v1 import AppTest

from registry import mappings, raw_sources
from registry.errors import InvalidFile, InvalidName, NotFound
from registry.layout import open_registry

ROOT = Path(__file__).resolve().parents[1]
EVENT_SOURCES = ("retailer_alpha_events", "retailer_beta_events", "retailer_gamma_events", "retailer_delta_events")


@pytest.fixture
def seeded(registry):
    raw_sources.generate_raw_sources(registry)
    mappings.install_demo_mappings(registry)
    return registry


def test_generation_is_deterministic_and_idempotent(tmp_path, registry, monkeypatch):
    raw_sources.generate_raw_sources(registry)
    first = snapshot(registry.raw)
    mtimes = {path: path.stat().st_mtime_ns for path in registry.raw.iterdir()}
    raw_sources.generate_raw_sources(registry)
    assert snapshot(registry.raw) == first
    assert {path: path.stat().st_mtime_ns for path in registry.raw.iterdir()} == mtimes
    assert registry.activity_log.read_text().count("raw_sources.generated") == 1

    monkeypatch.setenv("RMN_LORA_HOME", str(tmp_path / "other"))
    other = open_registry()
    raw_sources.generate_raw_sources(other)
    assert snapshot(other.raw) == first
    raw_sources.generate_raw_sources(other, seed=7)
    assert snapshot(other.raw) != first


def test_catalog_describes_the_files_on_disk(seeded):
    sources = raw_sources.list_sources(seeded)
    assert [s.id for s in sources] == list(raw_sources.SOURCE_IDS)
    assert sources[0].title == "Retailer Alpha events (CSV)" and sources[1].title == "Retailer Beta events (JSONL)"
    for source in sources:
        frame = raw_sources.load_source(source.id)
        assert source.generated and source.rows == len(frame)
        assert list(frame.columns) == source.columns
        for column in (source.date_column, source.retailer_column, source.type_column):
            assert column is None or column in source.columns
        low = 300 if source.id in EVENT_SOURCES else 100
        assert low <= source.rows <= 600, source.id


def test_events_look_like_real_ad_traffic(seeded):
    alpha = raw_sources.load_source("retailer_alpha_events")
    ctr = alpha["clicks"] / alpha["impressions"]
    assert ctr.between(0.0015, 0.025).all()
    assert set(alpha["adType"]) == {"sp", "sd", "onsite_disp", "video"}
    assert alpha["timestamp"].str.match(r"^2026-(09|10)-\d\d \d\d:\d\d:\d\d$").all()
    assert alpha["conv_click_7d"].isna().sum() > 0, "a few rows should still wait for attribution"
    beta = raw_sources.load_source("retailer_beta_events")
    assert beta["spend"].str.match(r"^\d+\.\d\d$").all()
    assert beta["adgroup_id"].isna().sum() > 0
    gamma = raw_sources.load_source("retailer_gamma_events")
    assert gamma["Date"].str.match(r"^(09|10)/\d\d/2026$").all()
    catalog = raw_sources.load_source("sku_catalog")
    assert catalog["sku"].is_unique and set(catalog["retailer"]) == {"Amazon", "Walmart", "Target", "Instacart"}
    assert set(alpha["asin"]) <= set(catalog["sku"])
    priors = raw_sources.load_source("uplift_priors")
    assert (priors["ci_low"].dropna() <= priors["ci_high"].dropna()).all()


@pytest.mark.parametrize("source_id", EVENT_SOURCES)
def test_shipped_mapping_harmonizes_its_whole_source(seeded, source_id):
    mapping = next(mappings.get_mapping(s.retailer) for s in mappings.list_mappings() if s.source_id == source_id)
    result = mappings.harmonize(mapping, raw_sources.load_source(source_id))
    assert result.failing_cells == 0
    assert result.frame["ts"].str.match(r"^2026-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$").all()


def test_date_filter_is_inclusive_in_the_sources_calendar(seeded):
    source = raw_sources.get_source("retailer_gamma_events")
    frame = raw_sources.load_source(source.id)
    one_day = raw_sources.filter_source(frame, source, date_from=date(2026, 9, 2), date_to=date(2026, 9, 2))
    assert len(one_day) == 6 and set(one_day["Date"]) == {"09/02/2026"}
    beta = raw_sources.get_source("retailer_beta_events")
    september = raw_sources.filter_source(raw_sources.load_source(beta.id), beta, date_to=date(2026, 9, 30))
    assert 0 < len(september) < beta.rows


def test_retailer_and_type_filters(seeded):
    source = raw_sources.get_source("performance_metrics")
    frame = raw_sources.load_source(source.id)
    choices = raw_sources.filter_choices(frame, source)
    assert choices.retailers == ["Amazon", "Instacart", "Target", "Walmart"]
    assert choices.date_min == date(2026, 9, 1) and choices.date_max == date(2026, 10, 31)
    target_video = raw_sources.filter_source(frame, source, retailers=["Target"], types=["video"])
    assert len(target_video) > 0
    assert set(target_video["retailer"]) == {"Target"} and set(target_video["placement_type"]) == {"video"}
    assert raw_sources.filter_source(frame, source, retailers=[], types=[]).equals(frame)


def test_single_retailer_source_filters_by_its_retailer(seeded):
    source = raw_sources.get_source("retailer_alpha_events")
    frame = raw_sources.load_source(source.id)
    assert raw_sources.filter_choices(frame, source).retailers == ["Amazon"]
    assert len(raw_sources.filter_source(frame, source, retailers=["Amazon"])) == len(frame)
    assert raw_sources.filter_source(frame, source, retailers=["Walmart"]).empty


def test_export_round_trips_csv_and_jsonl(seeded):
    source = raw_sources.get_source("retailer_beta_events")
    rows = raw_sources.filter_source(raw_sources.load_source(source.id), source, types=["video"])
    as_csv = pd.read_csv(io.BytesIO(raw_sources.export_frame(rows, "csv")), dtype={"item_id": str})
    assert len(as_csv) == len(rows) and list(as_csv.columns) == source.columns
    lines = raw_sources.export_frame(rows, "jsonl").decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == len(rows) and {r["placement"] for r in records} == {"video"}
    assert raw_sources.export_frame(rows.head(0), "csv").decode().startswith('"id","event_time",')
    with pytest.raises(InvalidFile, match="choose csv or jsonl"):
        raw_sources.export_frame(rows, "xlsx")


@pytest.mark.parametrize(
    ("source_id", "error", "reason"),
    [
        ("../raw/retailer_alpha_events", InvalidName, "path separator"),
        ("..", InvalidName, "'..'"),
        ("retailer_omega_events", NotFound, "no raw source 'retailer_omega_events'"),
    ],
)
def test_source_ids_are_checked(seeded, source_id, error, reason):
    with pytest.raises(error, match=reason):
        raw_sources.load_source(source_id)


def test_loading_before_generation_explains_what_to_do(registry):
    with pytest.raises(NotFound, match="has not been generated yet"):
        raw_sources.load_source("sku_catalog")
    assert not any(source.generated for source in raw_sources.list_sources())


def browser(monkeypatch) -> AppTest:
    monkeypatch.syspath_prepend(str(ROOT))
    return AppTest.from_file(str(ROOT / "views" / "data_browser.py"), default_timeout=120)


def test_browser_empty_state_generates_sources(registry, monkeypatch):
    app = browser(monkeypatch).run()
    assert not app.exception
    assert "No raw sources yet" in app.info[0].value
    app.button(key="generate_sources").click().run()
    assert not app.exception and not app.error
    assert raw_sources.get_source("retailer_alpha_events").generated


def test_browser_filters_paginates_and_harmonizes(seeded, monkeypatch):
    before = snapshot(seeded.root)
    app = browser(monkeypatch).run()
    assert not app.exception and not app.error
    assert app.selectbox(key="browser_source").value == "retailer_alpha_events"
    assert "480" in app.markdown[0].value
    app.number_input(key="browser_page").set_value(2).run()
    assert any("51–100 of 480" in caption.value for caption in app.caption)
    app.selectbox(key="browser_mapping_retailer_alpha_events").select("Amazon").run()
    assert not app.exception and "Every row on this page harmonizes" in app.success[0].value
    app.selectbox(key="browser_source").select("performance_metrics").run()
    app.multiselect(key="browser_retailers_performance_metrics").select("Target").run()
    assert not app.exception and not app.error
    assert "122" in app.markdown[0].value
    assert snapshot(seeded.root) == before


def test_browser_shows_a_readable_error_for_a_damaged_source(seeded, monkeypatch):
    path = raw_sources.get_source("retailer_beta_events").path
    path.write_text(path.read_text().replace("}\n", "\n", 1))
    app = browser(monkeypatch).run()
    app.selectbox(key="browser_source").select("retailer_beta_events").run()
    assert not app.exception
    assert app.error[0].value.replace("\\", "") == (  # error text is shown escaped (no live Markdown)
        "Line 1: retailer_beta_events.jsonl is not valid JSON here; regenerate the sample sources."
    )
    # The message says what to do; pressing Retry would only read the same damaged file again (issue 11 item 7).
    assert not [b for b in app.button if b.label == "Retry"]


def test_filters_skip_rows_with_unreadable_or_empty_values():
    source = next(spec for spec in raw_sources.SPECS if spec.id == "performance_metrics")
    frame = pd.DataFrame(
        {
            "date": ["2026-09-01", None, "garbage", "2026-09-05"],
            "retailer": ["A", None, "B", "A"],
            "placement_type": ["video", "x", None, "video"],
        }
    ).convert_dtypes()
    assert list(raw_sources.filter_source(frame, source, date_from=date(2026, 9, 2)).index) == [3]
    assert list(raw_sources.filter_source(frame, source, retailers=["A"], types=["video"]).index) == [0, 3]
    choices = raw_sources.filter_choices(frame, source)
    assert (choices.date_min, choices.date_max) == (date(2026, 9, 1), date(2026, 9, 5))
    assert choices.retailers == ["A", "B"]
