"""Home and Dataset Library pages rendered with AppTest against a real temp registry."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from registry import datasets as library
from services import upload_dataset

ROOT = Path(__file__).resolve().parents[1]


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "views" / name), default_timeout=120)


def console() -> AppTest:
    """The whole app through its navigation; it opens on Home."""
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)


@pytest.fixture
def two_datasets(registry, tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(30)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    upload_dataset("alpha_sft", tmp_path / "a.jsonl", description="first")
    pairs = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(10)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    upload_dataset("prefs_dpo", tmp_path / "d.jsonl")
    return registry


def test_home_counts_what_the_registry_holds(two_datasets):
    at = console().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Datasets"] == "2"
    assert metrics["Schema mappings"] == "0"
    assert any("Imported alpha_sft" in str(df.value) for df in at.dataframe)


def test_library_empty_state_says_what_to_do(registry):
    at = page("dataset_library.py").run()
    assert not at.exception
    assert any("library is empty" in info.value for info in at.info)


def test_library_lists_filters_and_validates(two_datasets):
    at = page("dataset_library.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["Name"]) == {"alpha_sft", "prefs_dpo"}
    at.selectbox(key="dataset_kind").select(
        next(o for o in at.selectbox(key="dataset_kind").options if "DPO" in o)
    ).run()
    assert list(at.dataframe[0].value["Name"]) == ["prefs_dpo"]
    at.selectbox(key="dataset_selected").select("alpha_sft").run()
    assert "validate_dataset" not in [b.key for b in at.button], "a closed tab is not drawn"
    at.session_state["dataset_tab"] = "Quality report"  # a click on the tab (AppTest cannot click one)
    at.run()
    at.button(key="validate_dataset").click().run()
    assert not at.exception
    expected = library.validate_dataset_by_name("alpha_sft").quality_score
    assert any(m.label == "Quality score" and m.value == f"{expected}/100" for m in at.metric)


def test_library_paginates_large_lists(registry, tmp_path):
    source = tmp_path / "x.jsonl"
    for i in range(30):
        source.write_text(json.dumps({"instruction": f"only {i}", "output": "x"}) + "\n")
        upload_dataset(f"set_{i:02d}", source)
    at = page("dataset_library.py").run()
    assert len(at.dataframe[0].value) == 25
    at.number_input(key="dataset_page").set_value(2).run()
    assert len(at.dataframe[0].value) == 5
    assert any("Showing 26–30 of 30" in c.value for c in at.caption)


def test_library_shows_errors_without_tracebacks(registry, monkeypatch):
    (registry.library / "broken").mkdir()
    (registry.library / "broken" / "meta.json").write_text("{not json")
    at = page("dataset_library.py").run()
    assert not at.exception and not at.error
    # One unreadable meta.json is one named item with a way out, not a page-wide error.
    warning = at.warning[0].value.replace("\\", "")
    assert str(registry.library / "broken" / "meta.json") in warning and "delete the dataset" in warning


def test_walk_nested_values_in_the_rows_read_as_json(registry, peer_data):
    """A chat or preference dataset's rows showed messages as Python reprs ("[{'role': 'user', 'content': ...") in
    the Rows table and the upload preview (issue 11 closing walk): they read as the JSON the file holds."""
    upload_dataset("dpo_en_demo", peer_data / "dpo_en_demo.json")
    stored = library.read_rows("dpo_en_demo", limit=1)[0]
    at = page("dataset_library.py").run()
    assert not at.exception
    rows = at.dataframe[-1].value
    nested = [column for column, value in stored.items() if not isinstance(value, str)]
    assert nested, "the canonical preference rows hold messages"
    for column in nested:
        assert json.loads(rows[column].iloc[0]) == stored[column]
