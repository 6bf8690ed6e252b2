"""Mappings: shipped YAMLs, coverage, harmonize with failing cells, versioned saves, refusals, and the page."""

import threading
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import snapshot
from streamlit.testing.v1 import AppTest

from registry import mappings, raw_sources
from registry.errors import InvalidMapping, InvalidName, NotFound

ROOT = Path(__file__).resolve().parents[1]
AMAZON_YAML = (mappings.DEMO_DIR / "amazon.yaml").read_text()


@pytest.fixture
def seeded(registry):
    raw_sources.generate_raw_sources(registry)
    mappings.install_demo_mappings(registry)
    return registry


def amazon_with(**changes) -> str:
    """The shipped Amazon YAML with one field replaced, keyed by target."""
    data = yaml.safe_load(AMAZON_YAML)
    for target, field in changes.items():
        data["fields"] = [field if f["target"] == target else f for f in data["fields"]]
    return yaml.safe_dump(data, sort_keys=False)


def test_shipped_mappings_are_listed_with_version_coverage_and_status(seeded):
    summaries = {s.retailer: s for s in mappings.list_mappings()}
    assert {r: (s.version, s.status, s.coverage) for r, s in summaries.items()} == {
        "Amazon": ("0.2.0", "active", 1.0),
        "Instacart": ("0.1.0", "draft", 0.8),
        "Target": ("0.1.5", "active", 1.0),
        "Walmart": ("0.2.0", "active", 1.0),
    }
    assert summaries["Instacart"].missing == ["placement_type", "currency"]


def test_amazon_mapping_follows_the_seed_example(seeded):
    amazon = mappings.get_mapping("Amazon")
    by_target = {field.target: field for field in amazon.fields}
    assert by_target["placement_type"].params["table"] == {
        "sp": "sponsored_product",
        "sd": "sponsored_display",
        "onsite_disp": "onsite_display",
        "video": "video",
    }
    assert (by_target["cost"].source, by_target["cost"].transform) == ("cost_micros", "scale")
    assert (by_target["ts"].source, by_target["ts"].transform) == ("timestamp", "to_utc")
    assert (by_target["conversions"].source, by_target["conversions"].transform) == ("conv_click_7d", "none")


def test_coverage_lists_missing_required_fields():
    mapping = mappings.parse_mapping_yaml(
        "retailer: Acme\nsource_id: sku_catalog\nfields:\n"
        "- {source: sku, target: sku}\n- {source: title, target: keyword}\n"
    )
    cov = mappings.coverage(mapping)
    assert cov.ratio == pytest.approx(0.1) and cov.filled == ["sku"] and "currency" in cov.missing


def test_harmonize_marks_exactly_the_failing_cells(seeded):
    mapping = mappings.parse_mapping_yaml(
        amazon_with(
            placement_type={
                "source": "adType",
                "target": "placement_type",
                "transform": "enum_map",
                "params": {"table": {"sp": "sponsored_product", "sd": "sponsored_display"}},
            }
        )
    )
    rows = mappings.sample_rows(mapping)
    result = mappings.harmonize(mapping, rows)
    expected = ~rows["adType"].isin(["sp", "sd"]).to_numpy()
    assert (result.failed["placement_type"].to_numpy() == expected).all()
    assert result.failed.drop(columns="placement_type").to_numpy().sum() == 0
    assert result.frame.shape == result.failed.shape == result.errors.shape == (len(rows), len(mapping.fields))
    first_bad = result.errors["placement_type"].dropna().iloc[0]
    assert "is not in the enum_map table" in first_bad
    assert result.display_frame().loc[result.failed["placement_type"], "placement_type"].str.startswith("✗").all()


def test_field_status_is_ok_partial_failing_or_untested(seeded):
    mapping = mappings.parse_mapping_yaml(
        amazon_with(
            placement_type={
                "source": "adType",
                "target": "placement_type",
                "transform": "enum_map",
                "params": {"table": {"sp": "sponsored_product"}},
            },
            clicks={"source": "click_count", "target": "clicks", "transform": "none"},
        )
    )
    statuses = {s.target: s for s in mappings.field_status(mapping, mappings.sample_rows(mapping))}
    assert statuses["event_id"].status == "ok" and statuses["event_id"].label == "✓ ok"
    assert statuses["placement_type"].status == "partial" and 0 < statuses["placement_type"].failing_rows < 200
    assert statuses["clicks"].status == "failing" and statuses["clicks"].failing_rows == 200
    assert statuses["clicks"].first_error == "column 'click_count' is not in the source"
    assert statuses["clicks"].label.startswith("✗ 200/200 rows fail")
    empty = mappings.field_status(mapping, pd.DataFrame())
    assert {s.status for s in empty} == {"untested"}


def test_field_status_is_remembered_only_for_the_same_mapping_and_the_same_rows(seeded):
    """The page asks for the saved mapping's statuses on every run; a remembered answer is never one for other rows
    (a changed cell, a renamed column, an added row) or for an edited mapping."""
    mapping = mappings.get_mapping("Amazon")
    rows = mappings.sample_rows(mapping)
    first = mappings.field_status(mapping, rows)
    assert {s.status for s in first} == {"ok"}
    assert mappings.field_status(mapping, rows.copy()) == first
    first[0].status = "failing"  # a caller's change stays its own
    assert mappings.field_status(mapping, rows)[0].status == "ok"

    broken_cell = rows.copy()  # same columns, same types, one value that fails
    broken_cell.loc[broken_cell.index[3], "impressions"] = -5
    assert next(s for s in mappings.field_status(mapping, broken_cell) if s.target == "impressions").failing_rows == 1
    renamed = rows.rename(columns={"impressions": "views"})
    assert next(s for s in mappings.field_status(mapping, renamed) if s.target == "impressions").status == "failing"
    assert {s.checked_rows for s in mappings.field_status(mapping, rows.head(7))} == {7}
    as_records = mappings.field_status(mapping, broken_cell.to_dict("records"))
    assert next(s for s in as_records if s.target == "impressions").failing_rows == 1

    edited = mapping.model_copy(deep=True)
    edited.fields[0].source = "no_such_column"
    assert mappings.field_status(edited, rows)[0].status == "failing"
    assert mappings.field_status(mapping, rows)[0].status == "ok"


def test_optional_fields_may_be_empty_but_required_ones_may_not(seeded):
    rows = [{"event_id": "e1", "asin": None, "keywordText": None}]
    mapping = mappings.parse_mapping_yaml(
        "retailer: Acme\nsource_id: retailer_alpha_events\nfields:\n"
        "- {source: event_id, target: event_id}\n- {source: asin, target: sku}\n"
        "- {source: keywordText, target: keyword}\n"
    )
    result = mappings.harmonize(mapping, rows)
    assert result.errors.at[0, "sku"] == "sku is required but the value is empty"
    assert result.frame.at[0, "keyword"] is None and not result.failed.at[0, "keyword"]


def test_save_bumps_the_patch_version_and_archives_the_old_one(seeded):
    original = (seeded.mappings / "amazon.yaml").read_bytes()
    edited = mappings.get_mapping("Amazon")
    edited.fields[0].notes = "Idempotency id from Marketing Stream."
    saved = mappings.save_mapping(edited)
    assert saved.version == "0.2.1"
    assert mappings.get_mapping("amazon").version == "0.2.1"
    assert mappings.get_mapping("Amazon").fields[0].notes == "Idempotency id from Marketing Stream."
    assert (seeded.mappings / ".history" / "amazon" / "0.2.0.yaml").read_bytes() == original
    assert mappings.mapping_history("Amazon") == ["0.2.0"]
    assert mappings.get_mapping_yaml("Amazon", "0.2.0") == original.decode()
    assert "Saved Amazon mapping v0.2.1" in seeded.activity_log.read_text()

    again = mappings.get_mapping("Amazon")
    again.status = "draft"
    assert mappings.save_mapping(again).version == "0.2.2"
    assert mappings.mapping_history("Amazon") == ["0.2.1", "0.2.0"]


def test_saving_yaml_text_works_like_saving_a_model(seeded):
    saved = mappings.save_mapping(AMAZON_YAML.replace("status: active", "status: Draft"))
    assert (saved.version, saved.status) == ("0.2.1", "draft")
    assert mappings.parse_mapping_yaml(mappings.mapping_to_yaml(saved)) == saved


def test_saving_an_unchanged_mapping_changes_nothing(seeded):
    before = snapshot(seeded.root)
    assert mappings.save_mapping(mappings.get_mapping("Walmart")).version == "0.2.0"
    assert snapshot(seeded.root) == before


def test_a_stale_edit_is_refused_instead_of_overwriting(seeded):
    first, second = mappings.get_mapping("Target"), mappings.get_mapping("Target")
    first.description, second.description = "first editor", "second editor"
    mappings.save_mapping(first)
    before = snapshot(seeded.root)
    with pytest.raises(InvalidMapping, match=r"was saved as v0\.1\.6 after you opened v0\.1\.5"):
        mappings.save_mapping(second)
    assert snapshot(seeded.root) == before


def test_concurrent_saves_from_the_same_version_never_both_win(seeded):
    outcomes: list[str] = []

    def edit(note: str) -> None:
        mapping = mappings.get_mapping("Walmart")
        mapping.description = note
        try:
            outcomes.append(mappings.save_mapping(mapping).version)
        except InvalidMapping:
            outcomes.append("refused")

    threads = [threading.Thread(target=edit, args=(f"editor {n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) in (["0.2.1", "refused"], ["0.2.1", "0.2.2"])
    assert mappings.get_mapping("Walmart").version == max(v for v in outcomes if v != "refused")


def test_explicit_versions_without_bump_must_be_newer(seeded):
    mapping = mappings.get_mapping("Amazon")
    mapping.description = "minor release"
    with pytest.raises(InvalidMapping, match="not newer than the saved v0.2.0"):
        mappings.save_mapping(mapping, bump=False)
    mapping.version = "0.3.0"
    assert mappings.save_mapping(mapping, bump=False).version == "0.3.0"


def test_a_new_retailer_keeps_its_given_version(seeded):
    text = (mappings.DEMO_DIR / "walmart.yaml").read_text().replace("retailer: Walmart", "retailer: Walmart Canada")
    saved = mappings.save_mapping(text.replace("version: 0.2.0", "version: 0.1.0"))
    assert saved.version == "0.1.0" and (seeded.mappings / "walmart_canada.yaml").exists()


def test_yaml_for_another_retailer_is_refused(seeded):
    before = snapshot(seeded.root)
    with pytest.raises(InvalidMapping, match="for retailer 'Amazon', not 'Walmart'"):
        mappings.save_mapping(AMAZON_YAML, expected_retailer="Walmart")
    assert snapshot(seeded.root) == before


BAD_INPUTS = {
    "invalid YAML": (
        "retailer: Amazon\nfields: [\n  {source: a, target: sku\n",
        InvalidMapping,
        r"Line \d+, column \d+",
    ),
    "python tag": (
        "retailer: Amazon\nsource_id: retailer_alpha_events\nfields: !!python/object/apply:os.system ['echo pwned']\n",
        InvalidMapping,
        r"Line 3, column 9: the YAML tag !!python/object/apply:os.system is not allowed",
    ),
    "unknown transform": (
        amazon_with(cost={"source": "cost_micros", "target": "cost", "transform": "scael", "params": {"divisor": 1e6}}),
        InvalidMapping,
        r"Field 11 \(cost\): unknown transform 'scael'",
    ),
    "enum_map without table": (
        amazon_with(placement_type={"source": "adType", "target": "placement_type", "transform": "enum_map"}),
        InvalidMapping,
        r"Field 7 \(placement_type\): enum_map params: table is required",
    ),
    "scale divisor 0": (
        amazon_with(cost={"source": "cost_micros", "target": "cost", "transform": "scale", "params": {"divisor": 0}}),
        InvalidMapping,
        "divisor is 0",
    ),
    "unknown time zone": (
        amazon_with(
            ts={
                "source": "timestamp",
                "target": "ts",
                "transform": "to_utc",
                "params": {"format": "%Y-%m-%d %H:%M:%S", "tz": "America/Springfield"},
            }
        ),
        InvalidMapping,
        "tz 'America/Springfield' is not a known IANA time zone",
    ),
    "unknown target": (
        amazon_with(cost={"source": "cost_micros", "target": "costs", "transform": "none"}),
        InvalidMapping,
        "'costs' is not an RMIS field; did you mean 'cost'",
    ),
    "duplicate target": (
        amazon_with(keyword={"source": "asin", "target": "sku", "transform": "none"}),
        InvalidMapping,
        r"Field 8 \(sku\): sku is already filled by field 6",
    ),
    "fails on sample rows": (
        amazon_with(sku={"source": "asin", "target": "sku", "transform": "cast", "params": {"to": "int"}}),
        InvalidMapping,
        r"Field 6 \(sku\) fails on 200 of 200 sample rows of retailer_alpha_events; first at row 1: 'B0",
    ),
    "enum value outside RMIS": (
        amazon_with(
            placement_type={
                "source": "adType",
                "target": "placement_type",
                "transform": "enum_map",
                "params": {"table": {"sp": "sponsored_products"}},
            }
        ),
        InvalidMapping,
        "the enum_map value for 'sp' is 'sponsored_products', but placement_type must be one of",
    ),
    "path tricks in retailer": (
        AMAZON_YAML.replace("retailer: Amazon", "retailer: ../../etc/cron.d"),
        InvalidName,
        "path separator",
    ),
    "dot-dot retailer": (AMAZON_YAML.replace("retailer: Amazon", "retailer: '..'"), InvalidName, "'..'"),
    "unknown source": (
        AMAZON_YAML.replace("retailer_alpha_events", "../raw/secrets"),
        InvalidMapping,
        "source_id '../raw/secrets' is not a raw source",
    ),
    "misspelt param": (
        amazon_with(cost={"source": "cost_micros", "target": "cost", "transform": "scale", "params": {"divsor": 100}}),
        InvalidMapping,
        "divsor is not a known parameter",
    ),
    "unknown key": (AMAZON_YAML + "owner: ops\n", InvalidMapping, "owner is not a known key"),
    "bad version": (
        AMAZON_YAML.replace("version: 0.2.0", "version: two"),
        InvalidMapping,
        "version: 'two' is not MAJOR.MINOR.PATCH",
    ),
    "not a mapping": ("- retailer: Amazon\n", InvalidMapping, "must be a mapping"),
    "empty": ("   \n", InvalidMapping, "The YAML is empty"),
    "alias bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
        InvalidMapping,
        "more than 5000 values",
    ),
}


@pytest.mark.parametrize(("text", "error", "reason"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_mappings_are_refused_and_change_nothing(seeded, text, error, reason):
    before = snapshot(seeded.root)
    with pytest.raises(error, match=reason):
        mappings.save_mapping(text)
    assert snapshot(seeded.root) == before


def test_every_problem_is_reported_at_once(seeded):
    text = amazon_with(
        cost={"source": "cost_micros", "target": "cost", "transform": "scale", "params": {"divisor": 0}},
        clicks={"source": "clicks", "target": "clickz", "transform": "none"},
    )
    with pytest.raises(InvalidMapping, match=r"^2 problems:\n- Field 10 .*\n- Field 11 .*divisor is 0"):
        mappings.parse_mapping_yaml(text)


def test_editor_rows_round_trip_and_bad_params_are_refused(seeded):
    amazon = mappings.get_mapping("Amazon")
    rows = mappings.editor_rows(amazon).to_dict("records")
    assert rows[10]["params"] == '{"divisor": 1000000}'
    assert mappings.mapping_from_editor(amazon, [*rows, {"source": None, "target": None}]) == amazon
    rows[10]["params"] = '{"divisor": '
    with pytest.raises(InvalidMapping, match="Row 11: params are not valid JSON"):
        mappings.mapping_from_editor(amazon, rows)
    rows[10]["params"] = "[1000000]"
    with pytest.raises(InvalidMapping, match="Row 11: params must be a JSON object"):
        mappings.mapping_from_editor(amazon, rows)


def test_lookups_refuse_path_tricks_and_missing_retailers(seeded):
    with pytest.raises(InvalidName):
        mappings.get_mapping("../mappings/amazon")
    with pytest.raises(NotFound, match="no mapping for 'Kroger'"):
        mappings.get_mapping("Kroger")
    with pytest.raises(NotFound, match="no archived version 0.1.9"):
        mappings.get_mapping_yaml("Amazon", "0.1.9")


def test_an_unreadable_file_is_listed_with_its_problem_and_can_be_replaced(seeded):
    (seeded.mappings / "kroger.yaml").write_text("retailer: Kroger\nfields: [\n")
    kroger = next(s for s in mappings.list_mappings() if s.slug == "kroger")
    assert kroger.status == "invalid" and "Line" in kroger.problem
    text = (mappings.DEMO_DIR / "walmart.yaml").read_text().replace("retailer: Walmart", "retailer: Kroger")
    assert mappings.save_mapping(text).version == "0.2.0"
    archived = list((seeded.mappings / ".history" / "kroger").glob("unreadable-*.yaml"))
    assert len(archived) == 1 and archived[0].read_text() == "retailer: Kroger\nfields: [\n"


def test_a_mapping_file_is_parsed_once_per_version_and_every_change_is_read_at_once(seeded, monkeypatch):
    """Pages list every mapping on each run: a file is parsed again only when it changed (a save, a hand edit, a
    corruption), and a caller that changes what it got never changes what the next caller gets."""
    parses = []
    safe_load = yaml.safe_load
    monkeypatch.setattr(yaml, "safe_load", lambda text: parses.append(text) or safe_load(text))
    assert len(mappings.list_mappings()) == 4
    first = len(parses)
    assert {s.retailer for s in mappings.list_mappings()} == {"Amazon", "Instacart", "Target", "Walmart"}
    assert mappings.get_mapping("Amazon").version == "0.2.0"
    assert len(parses) == first  # nothing changed, nothing parsed again

    path = seeded.mappings / "amazon.yaml"
    path.write_text(path.read_text().replace("version: 0.2.0", "version: 0.2.7"))  # a hand edit, in place
    assert mappings.get_mapping("Amazon").version == "0.2.7"
    assert next(s for s in mappings.list_mappings() if s.retailer == "Amazon").version == "0.2.7"

    saved = mappings.save_mapping(mappings.get_mapping("Amazon").model_copy(update={"description": "Saved here."}))
    assert saved.version == "0.2.8"
    assert (mappings.get_mapping("Amazon").version, mappings.get_mapping("Amazon").description) == (
        "0.2.8",
        "Saved here.",
    )
    path.write_text("retailer: Amazon\nfields: [\n")
    assert next(s for s in mappings.list_mappings() if s.slug == "amazon").status == "invalid"

    walmart = mappings.get_mapping("Walmart")
    walmart.fields.clear()
    assert len(mappings.get_mapping("Walmart").fields) > 0


def test_install_demo_mappings_never_replaces_existing_ones(registry):
    assert mappings.install_demo_mappings(registry) == ["amazon", "instacart", "target", "walmart"]
    (registry.mappings / "amazon.yaml").write_text("edited")
    assert mappings.install_demo_mappings(registry) == []
    assert (registry.mappings / "amazon.yaml").read_text() == "edited"


def test_save_without_generated_sources_skips_the_sample_test(registry):
    mappings.install_demo_mappings(registry)
    amazon = mappings.get_mapping("Amazon")
    amazon.description = "edited before any raw data exists"
    assert mappings.save_mapping(amazon).version == "0.2.1"


def mapping_page(monkeypatch) -> AppTest:
    monkeypatch.syspath_prepend(str(ROOT))
    return AppTest.from_file(str(ROOT / "views" / "schema_mappings.py"), default_timeout=120)


def test_page_empty_state_loads_the_demo_data_as_every_page_does(registry, monkeypatch):
    """Schema Mappings offered 'Install demo mappings and sample data' (mappings and raw sources, no datasets) where
    Training Jobs and Dataset Library offer 'Load the demo data' (issue 11 closing walk, empty registry): one way out
    of an empty registry, the same data."""
    from registry.datasets import list_datasets

    app = mapping_page(monkeypatch).run()
    assert not app.exception and "No mappings yet" in app.info[0].value
    app.button(key="mappings_load_demo").click().run()
    assert not app.exception and not app.error
    assert [m.value for m in app.metric][:3] == ["100%", "v0.2.0", "Active"]
    assert {"retailer_amazon_sft", "retailer_amazon_eval"} <= {d.name for d in list_datasets()}


def test_page_renders_and_tests_a_mapping(seeded, monkeypatch):
    app = mapping_page(monkeypatch).run()
    assert not app.exception and not app.error
    assert app.selectbox(key="mapping_retailer").value == "Amazon"
    app.button(key="test_mapping").click().run()
    assert not app.exception and not app.error
    assert app.success[0].value == "All 15 fields of the edited mapping succeed on the 200 sample rows."

    app.selectbox(key="mapping_retailer").select("Instacart").run()
    assert "placement_type, currency" in app.warning[0].value


def test_page_saves_yaml_or_refuses_it_changing_nothing(seeded, monkeypatch):
    app = mapping_page(monkeypatch).run()
    bad = AMAZON_YAML.replace("divisor: 1000000", "divisor: 0")
    before = snapshot(seeded.root)
    app.text_area(key="mapping_yaml_amazon_0.2.0").input(bad).run()
    app.button(key="save_mapping_yaml").click().run()
    assert not app.exception and "divisor is 0" in app.error[0].value and "Nothing was changed" in app.error[0].value
    assert snapshot(seeded.root) == before

    app.text_area(key="mapping_yaml_amazon_0.2.0").input(AMAZON_YAML.replace("status: active", "status: draft")).run()
    app.button(key="save_mapping_yaml").click().run()
    assert not app.exception and app.success[0].value.replace("\\", "") == "Saved Amazon mapping as v0.2.1."
    assert mappings.get_mapping("Amazon").status == "draft"


def test_page_lists_unreadable_files_without_failing(seeded, monkeypatch):
    for path in seeded.mappings.glob("*.yaml"):
        path.write_text("retailer: [\n")
    app = mapping_page(monkeypatch).run()
    assert not app.exception and not app.error
    assert len(app.warning) == 4 and "cannot be read" in app.warning[0].value
