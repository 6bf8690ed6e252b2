"""Validation and import read a file the same way: a file the import refuses never scores above Poor, the report
counts every record the file holds, and positions are lines of the file (JSONL, JSON arrays and CSV alike)."""

import json
from pathlib import Path

import pytest

from registry.datasets import import_dataset, list_datasets, preview_file
from registry.errors import InvalidFile
from registry.validation import REFUSED_MAX_SCORE, validate_file


def _alpaca(index: int) -> dict[str, str]:
    return {"instruction": f"Summarise campaign {index} for the weekly report", "input": "", "output": f"Done {index}."}


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _cut_jsonl(tmp: Path) -> tuple[Path, int, int]:
    """100 records, the last one cut in the middle of its line (a download that stopped)."""
    text = "".join(json.dumps(_alpaca(i)) + "\n" for i in range(100))
    path = tmp / "cut.jsonl"
    path.write_text(text[: len(text) - 20])
    return path, 100, 100


def _cp1252_csv(tmp: Path) -> tuple[Path, int, int]:
    """400 rows saved by Excel on Western Windows: row 36 (line 37) has a curly quote, byte 0x93."""
    rows = ["instruction,input,output"]
    for i in range(400):
        answer = "\u201cYes\u201d it ran." if i == 35 else f"Ran {i}."
        rows.append(f"Did campaign {i} run?,,{answer}")
    path = tmp / "excel.csv"
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("cp1252"))
    return path, 400, 37


def _array_with_bad_type(tmp: Path) -> tuple[Path, int, int]:
    """A pretty-printed JSON array whose fourth record's output is an object: its line is where its '{' is."""
    records = [_alpaca(i) for i in range(6)]
    records[3]["output"] = {"x": [1, 2]}  # type: ignore[assignment]
    path = tmp / "array.json"
    path.write_text(json.dumps(records, indent=2))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if '"Summarise campaign 3' in text) - 1
    return path, 6, line


def _array_cut(tmp: Path) -> tuple[Path, int, int]:
    """A JSON array cut inside its third record: two records read, the third refused at the line it breaks on."""
    path = tmp / "array_cut.json"
    text = json.dumps([_alpaca(i) for i in range(3)], indent=2)
    path.write_text(text[: text.index("Done 2")])
    return path, 3, len(path.read_text().splitlines())


def _jsonl_missing_field(tmp: Path) -> tuple[Path, int, int]:
    records = [_alpaca(i) for i in range(30)]
    del records[11]["output"]
    return _jsonl(tmp / "missing.jsonl", records), 30, 12


def _jsonl_not_object(tmp: Path) -> tuple[Path, int, int]:
    path = _jsonl(tmp / "list.jsonl", [_alpaca(i) for i in range(10)])
    path.write_text(path.read_text() + "[1, 2]\n" + json.dumps(_alpaca(10)) + "\n")
    return path, 12, 11


def _csv_wrong_columns(tmp: Path) -> tuple[Path, int, int]:
    path = tmp / "columns.csv"
    lines = ["instruction,input,output", *(f"q{i},,a{i}" for i in range(5)), "q5,,a5,extra", "q6,,a6"]
    path.write_text("\n".join(lines) + "\n")
    return path, 7, 7


def _csv_multiline_then_bad(tmp: Path) -> tuple[Path, int, int]:
    """A quoted cell spanning three lines moves every later row down; the bad row is named by its own first line."""
    path = tmp / "multiline.csv"
    path.write_text('instruction,input,output\nq0,,"one\ntwo\nthree"\nq1,,a1\nq2,,a2,extra\n')
    return path, 3, 6


# The bad files of tests/test_validation.py, each checked here against the import as well.
def _jsonl_broken_middle_line(tmp: Path) -> tuple[Path, int, int]:
    path = _jsonl(tmp / "broken.jsonl", [_alpaca(i) for i in range(20)])
    lines = path.read_text().splitlines()
    lines[2] = '{"instruction": "broken", "output": '
    path.write_text("\n".join(lines) + "\n")
    return path, 20, 3


def _jsonl_object_output(tmp: Path) -> tuple[Path, int, int]:
    records = [_alpaca(i) for i in range(20)]
    records[6]["output"] = {"answer": 1}  # type: ignore[assignment]
    return _jsonl(tmp / "object.jsonl", records), 20, 7


def _jsonl_ten_percent_malformed(tmp: Path) -> tuple[Path, int, int]:
    path = _jsonl(tmp / "tenth.jsonl", [_alpaca(i) for i in range(100)])
    lines = ["{not json" if i % 10 == 0 else line for i, line in enumerate(path.read_text().splitlines())]
    path.write_text("\n".join(lines) + "\n")
    return path, 100, 1


def _jsonl_one_latin1_line(tmp: Path) -> tuple[Path, int, int]:
    path = _jsonl(tmp / "latin1_line.jsonl", [_alpaca(i) for i in range(10)])
    path.write_bytes(path.read_bytes() + b'{"instruction": "caf\xe9", "output": "x"}\n')
    return path, 11, 11


def _jsonl_no_dataset_fields(tmp: Path) -> tuple[Path, int, int]:
    return _jsonl(tmp / "foo.jsonl", [{"foo": i} for i in range(5)]), 5, 1


def _chat_unknown_role(tmp: Path) -> tuple[Path, int, int]:
    turn = lambda role, text: {"role": role, "content": text}  # noqa: E731
    records = [{"messages": [turn("user", f"Question {i}?"), turn("assistant", f"Answer {i}.")]} for i in range(10)]
    records[1] = {"messages": "not a list"}  # type: ignore[dict-item]
    records[3] = {"messages": [turn("user", "Hi"), turn("wizard", "Hello")]}
    return _jsonl(tmp / "chat.jsonl", records), 10, 2


BAD_FILES = {
    "jsonl cut mid-line": (_cut_jsonl, "alpaca"),
    "Windows-1252 CSV": (_cp1252_csv, "alpaca"),
    "JSON array, wrong type": (_array_with_bad_type, "alpaca"),
    "JSON array, cut": (_array_cut, "alpaca"),
    "JSONL, missing field": (_jsonl_missing_field, "alpaca"),
    "JSONL, not an object": (_jsonl_not_object, "alpaca"),
    "CSV, wrong column count": (_csv_wrong_columns, "alpaca"),
    "CSV, multi-line cell": (_csv_multiline_then_bad, "alpaca"),
    "JSONL, broken middle line": (_jsonl_broken_middle_line, "alpaca"),
    "JSONL, object as output": (_jsonl_object_output, "alpaca"),
    "JSONL, 10% malformed": (_jsonl_ten_percent_malformed, "alpaca"),
    "JSONL, one Latin-1 line": (_jsonl_one_latin1_line, "alpaca"),
    "JSONL, no dataset fields": (_jsonl_no_dataset_fields, "alpaca"),
    "chat, not a list and unknown role": (_chat_unknown_role, "chat"),
}


@pytest.mark.parametrize(("make", "kind"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_refused_file_is_poor_and_every_record_is_counted(registry, tmp_path, make, kind):
    path, records, bad_line = make(tmp_path)
    with pytest.raises(InvalidFile) as refused:
        import_dataset("bad", path, kind=kind)
    assert refused.value.line == bad_line
    assert list_datasets() == []

    report = validate_file(path, kind=kind)
    assert report.refused is not None and report.refused.line == bad_line
    assert report.quality_score <= REFUSED_MAX_SCORE and report.band == "Poor"
    assert report.rows == records
    assert f"line {bad_line}" in report.summary and f"of the {records:,} records" in report.summary


def test_a_cut_jsonl_file_no_longer_scores_excellent(registry, tmp_path):
    path, _, _ = _cut_jsonl(tmp_path)
    report = validate_file(path)
    assert (report.rows, report.valid_rows, report.band) == (100, 99, "Poor")
    assert report.refused.check == "json" and report.refused.record == 100


def test_windows_1252_names_the_line_of_the_first_bad_byte_and_the_encoding(registry, tmp_path):
    path, _, _ = _cp1252_csv(tmp_path)
    with pytest.raises(InvalidFile) as refused:
        preview_file(path)
    message = str(refused.value)
    assert message.startswith("Line 37: not valid UTF-8 (byte 0x93")
    assert "Windows-1252" in message and "encoding=cp1252" in message

    report = validate_file(path)
    assert (report.rows, report.valid_rows) == (400, 399)
    assert [(i.line, i.record) for i in report.issues if i.check == "json"] == [(37, 36)]


def test_encoding_option_imports_every_row_as_written(registry, tmp_path):
    path, _, _ = _cp1252_csv(tmp_path)
    record = import_dataset("excel", path, encoding="cp1252")
    assert record.rows == 400
    report = validate_file(path, encoding="cp1252")
    assert report.refused is None and report.rows == report.valid_rows == 400
    assert record.quality_score == report.quality_score
    from registry.datasets import read_rows

    assert read_rows("excel", offset=35, limit=1)[0]["output"] == "\u201cYes\u201d it ran."


def test_utf16_file_imports_with_its_encoding(registry, tmp_path):
    path = tmp_path / "utf16.jsonl"
    path.write_text("".join(json.dumps(_alpaca(i), ensure_ascii=False) + "\n" for i in range(5)), encoding="utf-16")
    with pytest.raises(InvalidFile, match="encoding=utf-16"):
        import_dataset("wide", path)
    assert import_dataset("wide", path, encoding="utf-16").rows == 5


def test_a_wrong_encoding_is_refused_at_its_line(registry, tmp_path):
    path = tmp_path / "utf8.jsonl"
    path.write_text(
        json.dumps(_alpaca(0)) + "\n" + json.dumps({**_alpaca(1), "output": "caf\u00e9"}, ensure_ascii=False) + "\n"
    )
    with pytest.raises(InvalidFile, match="Line 2: the file is not ascii text"):
        validate_file(path, encoding="ascii")
    with pytest.raises(InvalidFile, match="Unknown encoding"):
        validate_file(path, encoding="klingon")


def test_json_array_issues_name_lines_of_the_file(registry, tmp_path):
    records = [_alpaca(i) for i in range(5)]
    records[2]["output"] = "   "
    path = tmp_path / "pretty.json"
    path.write_text(json.dumps(records, indent=2))
    lines = path.read_text().splitlines()
    starts = [n for n, text in enumerate(lines, 1) if text.strip() == "{"]
    report = validate_file(path)
    assert [(i.check, i.line, i.record) for i in report.issues] == [("empty", starts[2], 3)]
    assert report.refused is None and report.rows == 5


def test_validation_and_import_agree_on_the_stored_score(registry, tmp_path):
    records = [_alpaca(i) for i in range(40)]
    records[5]["output"] = "Hello {{name}}"
    path = _jsonl(tmp_path / "fine.jsonl", records)
    assert import_dataset("fine", path).quality_score == validate_file(path).quality_score
