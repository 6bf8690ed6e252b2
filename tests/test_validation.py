"""Dataset quality report: peer data, one synthetic file per check (with line numbers), bands and refusals."""

import codecs
import csv
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from registry import validation
from registry.errors import InvalidFile
from registry.readers import line_ranges
from registry.shapes import DatasetKind
from registry.validation import QualityReport, quality_band, validate_file

WORDS = (
    "retail media campaign budget shopper audience placement creative weekly sales report brand product "
    "search display video season holiday margin forecast growth click impression conversion store online"
).split()


def clean_records(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """Distinct, realistic alpaca records: no PII, no duplicates, lengths in a narrow band."""
    rng = random.Random(seed)
    records = []
    for index in range(n):
        topic = " ".join(rng.sample(WORDS, 3))
        answer = " ".join(rng.choices(WORDS, k=rng.randint(25, 40)))
        records.append(
            {"instruction": f"Explain {topic} for team {index}.", "input": "", "output": answer.capitalize() + "."}
        )
    return records


def write_jsonl(folder: Path, records: list[Any], name: str = "data.jsonl") -> Path:
    """One line per item: dicts become JSON, strings are written as they are (for broken lines)."""
    path = folder / name
    lines = (item if isinstance(item, str) else json.dumps(item) for item in records)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def check_lines(report: QualityReport, check: str) -> list[int]:
    return report.check(check).lines


# --- peer data: real LLaMA-Factory files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "rows", "lowest"),
    [
        ("alpaca_en_demo.json", DatasetKind.ALPACA, 999, 95),
        ("dpo_en_demo.json", DatasetKind.DPO, 300, 90),
        ("kto_en_demo.json", DatasetKind.KTO, 300, 95),
        ("v1_sft_demo.jsonl", DatasetKind.CHAT, 200, 90),
        ("identity.json", DatasetKind.ALPACA, 91, 0),  # 93% of its answers are "I am {{name}}": see below
    ],
)
def test_peer_data_kind_and_sensible_report(
    peer_data: Path, name: str, kind: DatasetKind, rows: int, lowest: int
) -> None:
    report = validate_file(peer_data / name)
    assert report.kind is kind
    assert report.rows == report.valid_rows == rows
    assert lowest <= report.quality_score <= 100
    assert report.check("json").count == report.check("required").count == report.check("types").count == 0
    assert (
        report.tokens is not None
        and report.tokens.min <= report.tokens.median <= report.tokens.p95 <= report.tokens.max
    )


# Shape and score of each peer file when issue 12 was done, with the score before it and why it moved: the import
# stores the score the report gives, so a change to a rule that moves a real file shows up here.
PEER_SCORES = {
    "alpaca_en_demo.json": ("alpaca", 999, 98),  # 98 before: "(555) 123-4567" is no longer a phone number
    "dpo_en_demo.json": ("dpo", 300, 96),  # 95: example.com emails, a 13-digit sum were PII
    "kto_en_demo.json": ("kto", 300, 98),  # chat, 97: the label was ignored; ftp.example.com was an email
    "v1_sft_demo.jsonl": ("chat", 200, 90),  # 94: a quarter of its answers are "I am {{name}}"
    "identity.json": ("alpaca", 91, 63),  # 90, Good: 85 of 91 answers hold {{name}} / {{author}}
}


@pytest.mark.parametrize("name", PEER_SCORES)
def test_peer_files_import_with_their_shape_and_reported_score(registry, peer_data: Path, name: str) -> None:
    from registry.datasets import import_dataset

    report = validate_file(peer_data / name)
    record = import_dataset(Path(name).stem.replace(".", "_"), peer_data / name)
    assert (record.kind.value, record.rows, record.quality_score) == PEER_SCORES[name]
    assert (report.kind.value, report.rows, report.quality_score) == PEER_SCORES[name]


def test_identity_placeholders_make_it_poor(peer_data: Path) -> None:
    """A model trained on it would answer "I am {{name}}": a file of such answers cannot be Good (it scored 90)."""
    report = validate_file(peer_data / "identity.json")
    placeholders = report.check("placeholders")
    assert placeholders.count == 85 and placeholders.penalty == pytest.approx(40 * 85 / 91, abs=0.01)
    assert placeholders.lines[0] == 2  # the first record starts on line 2 of the JSON array
    assert "{{name}}" in placeholders.examples[0] and "{{author}}" in placeholders.examples[0]
    assert (report.quality_score, report.band) == (63, "Poor")


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        ("output", "Hello, I am {{name}}.", "placeholders"),
        ("output", " ", "empty"),
        ("input", "Customer maria.gonzalez@gmail.com called.", "pii"),
    ],
)
def test_deductions_grow_with_the_share_of_affected_records(tmp_path: Path, field: str, value: str, check: str) -> None:
    scores = {}
    for share in (5, 20, 50, 90):
        records = clean_records(100)
        for record in records[:share]:
            record[field] = value
        report = validate_file(write_jsonl(tmp_path, records, f"{check}-{share}.jsonl"))
        assert report.check(check).count == share
        scores[share] = report.quality_score
    assert scores[5] > scores[20] > scores[50] >= scores[90]
    assert scores[5] >= 90 and scores[50] < 85 and quality_band(scores[90])[0] == "Poor"


def test_kto_label_balance_is_measured(peer_data: Path) -> None:
    report = validate_file(peer_data / "kto_en_demo.json")
    assert report.label_field == "label"
    assert report.label_distribution == {"true": 150, "false": 150}
    balance = report.check("balance")
    assert balance.applicable and balance.count == 0 and "true 50%" in balance.note


def test_dpo_checks_apply_to_dpo_only(peer_data: Path) -> None:
    assert validate_file(peer_data / "dpo_en_demo.json").check("dpo_identical").applicable
    assert not validate_file(peer_data / "alpaca_en_demo.json").check("dpo_identical").applicable


# --- one synthetic file per check ---------------------------------------------------------------


def test_clean_realistic_dataset_is_excellent(tmp_path: Path) -> None:
    report = validate_file(write_jsonl(tmp_path, clean_records(300)))
    assert report.quality_score >= 95 and report.band == "Excellent"
    assert report.band_advice == "Ready for production training"
    assert report.issue_count == 0 and report.issues == []


def test_malformed_json_at_line_3(tmp_path: Path) -> None:
    records: list[Any] = clean_records(20)
    records[2] = '{"instruction": "broken", "output": '
    report = validate_file(write_jsonl(tmp_path, records))
    assert check_lines(report, "json") == [3]
    assert report.rows == 20 and report.valid_rows == 19
    assert report.issues[0].line == 3 and "invalid JSON" in report.issues[0].message


def test_missing_field_at_line_5(tmp_path: Path) -> None:
    records = clean_records(20)
    del records[4]["output"]
    report = validate_file(write_jsonl(tmp_path, records))
    assert check_lines(report, "required") == [5]
    assert "output" in report.check("required").examples[0]


def test_wrong_type_output_object(tmp_path: Path) -> None:
    records = clean_records(20)
    records[6]["output"] = {"answer": 1}
    report = validate_file(write_jsonl(tmp_path, records))
    assert check_lines(report, "types") == [7]
    assert "'output' should be text, got dict" in report.check("types").examples[0]


def test_chat_types_and_empty_turns(tmp_path: Path) -> None:
    turn = lambda role, text: {"role": role, "content": text}  # noqa: E731
    records: list[Any] = [
        {
            "messages": [
                turn("user", f"Question {i} about {WORDS[i]}?"),
                turn("assistant", f"Answer {i}: {WORDS[-i]} grows."),
            ]
        }
        for i in range(1, 11)
    ]
    records[1] = {"messages": "not a list"}
    records[3] = {"messages": [turn("user", "Hi"), turn("wizard", "Hello")]}
    records[5] = {"messages": [turn("user", "Hi"), turn("assistant", "  ")]}
    report = validate_file(write_jsonl(tmp_path, records), kind=DatasetKind.CHAT)
    assert check_lines(report, "types") == [2, 4]
    assert "unknown role 'wizard'" in report.check("types").examples[1]
    assert check_lines(report, "empty") == [6]
    assert "assistant" in report.check("empty").examples[0]


def test_empty_value(tmp_path: Path) -> None:
    records = clean_records(20)
    records[9]["output"] = "   \n "
    report = validate_file(write_jsonl(tmp_path, records))
    assert check_lines(report, "empty") == [10]
    assert check_lines(report, "length") == []  # reported once, as empty


def test_exact_and_normalized_duplicates(tmp_path: Path) -> None:
    records = clean_records(30)
    records[12] = dict(records[1])
    shouted = {key: value.upper().replace(" ", "   ") + " !!" for key, value in records[3].items()}
    records[20] = shouted
    report = validate_file(write_jsonl(tmp_path, records))
    assert check_lines(report, "duplicates") == [13]
    assert "line 2" in report.check("duplicates").examples[0]
    assert check_lines(report, "near_duplicates") == [21]
    assert "line 4" in report.check("near_duplicates").examples[0]


def test_5000_token_outlier(tmp_path: Path) -> None:
    records = clean_records(60)
    records[41]["output"] = "word " * 4000  # 20,000 bytes: about 5,000 tokens
    report = validate_file(write_jsonl(tmp_path, records))
    assert check_lines(report, "length") == [42]
    tokens = int(re.search(r"about (\d+) tokens", report.check("length").examples[0]).group(1))  # type: ignore[union-attr]
    assert 5000 <= tokens < 5100  # the output plus the instruction
    assert "estimate" in report.check("length").note


def test_imbalanced_labels(tmp_path: Path) -> None:
    records = [{**record, "label": index < 46} for index, record in enumerate(clean_records(50))]
    report = validate_file(write_jsonl(tmp_path, records))
    balance = report.check("balance")
    assert balance.applicable and balance.count == 46 and balance.penalty > 0
    assert "imbalanced" in balance.note
    assert report.label_distribution == {"true": 46, "false": 4}
    assert any(issue.check == "balance" and issue.line is None for issue in report.issues)


def test_balance_not_applicable_without_a_label(tmp_path: Path) -> None:
    balance = validate_file(write_jsonl(tmp_path, clean_records(10))).check("balance")
    assert not balance.applicable and "not applicable" in balance.note


def test_free_text_task_field_is_not_a_class_label(tmp_path: Path) -> None:
    records = [{**record, "task": f"task number {index}"} for index, record in enumerate(clean_records(80))]
    report = validate_file(write_jsonl(tmp_path, records))
    assert not report.check("balance").applicable and report.label_distribution == {}


def test_list_labels_are_counted_by_their_json(tmp_path: Path) -> None:
    records = [
        {**record, "label": ["a", "b"] if index % 2 else ["c"]} for index, record in enumerate(clean_records(10))
    ]
    report = validate_file(write_jsonl(tmp_path, records))
    assert report.label_distribution == {'["a","b"]': 5, '["c"]': 5}


def test_each_pii_kind_with_line_numbers(tmp_path: Path) -> None:
    records = clean_records(20)
    records[1]["output"] = "Email jane.doe@acme-mail.com for the file."
    records[2]["output"] = "Call the desk at (415) 867-5334 after lunch."
    records[3]["output"] = "The card on file is 4111 1111 1111 1111."
    records[4]["output"] = "Order number 4111111111111112 was shipped."  # 16 digits, Luhn-invalid
    records[5]["output"] = "Requests came from 10.24.108.7 overnight."
    report = validate_file(write_jsonl(tmp_path, records))
    pii = report.check("pii")
    assert pii.lines == [2, 3, 4, 6]
    assert "j***@acme-mail.com" in pii.examples[0] and "**** **** **** 1111" in pii.examples[2]
    assert "jane.doe" not in report.model_dump_json()
    assert all(kind in pii.note for kind in ("email", "phone", "card", "ipv4"))


def test_dpo_chosen_equals_rejected(tmp_path: Path) -> None:
    records = [
        {
            "prompt": f"Pick a slogan for {word}.",
            "chosen": f"{word.title()} for everyone.",
            "rejected": f"Buy {word} now.",
        }
        for word in WORDS[:12]
    ]
    records[4]["rejected"] = records[4]["chosen"]
    report = validate_file(write_jsonl(tmp_path, records))
    assert report.kind is DatasetKind.DPO
    assert check_lines(report, "dpo_identical") == [5]


def test_json_array_line_numbers(tmp_path: Path) -> None:
    records = clean_records(8)
    del records[3]["output"]
    path = tmp_path / "data.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n", encoding="utf-8")
    report = validate_file(path)
    assert report.format == "json" and report.rows == 8
    assert check_lines(report, "required") == [5]


def test_csv_line_numbers(tmp_path: Path) -> None:
    records = clean_records(8)
    records[2]["output"] = ""
    records[5]["output"] = "Email jane.doe@acme-mail.com today."
    path = tmp_path / "data.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(records)
    report = validate_file(path)
    assert report.format == "csv" and report.rows == 8
    assert check_lines(report, "empty") == [4]
    assert check_lines(report, "pii") == [7]


def test_evaluation_kind(tmp_path: Path) -> None:
    records = [
        {"prompt": f"Map adType value {word} to RMIS.", "reference": f"placement_type: {word}"} for word in WORDS[:10]
    ]
    report = validate_file(write_jsonl(tmp_path, records))
    assert report.kind is DatasetKind.EVALUATION and report.valid_rows == 10 and report.issue_count == 0


def test_non_ascii_text_is_casefolded_and_measured_in_utf8(tmp_path: Path) -> None:
    records = clean_records(10)
    records[2] = {"instruction": "Übersetze bitte", "input": "", "output": "Die Straße ist lang, sehr lang."}
    records[7] = {"instruction": "ÜBERSETZE BITTE!", "input": "", "output": "die STRASSE ist lang sehr lang"}
    report = validate_file(write_jsonl(tmp_path, records))
    assert check_lines(report, "near_duplicates") == [8]
    assert report.tokens is not None and report.tokens.max >= 10


def test_kind_given_explicitly(tmp_path: Path) -> None:
    report = validate_file(write_jsonl(tmp_path, clean_records(10)), kind="chat")
    assert report.kind is DatasetKind.CHAT and report.valid_rows == 10


def test_separator_character_inside_a_text(tmp_path: Path) -> None:
    records = clean_records(10)
    records[3]["output"] = "odd \x1e control character"
    report = validate_file(write_jsonl(tmp_path, records))
    assert report.valid_rows == 10 and report.check("duplicates").count == 0


# --- large files: line numbers across reader blocks ---------------------------------------------


def messy_records(n: int) -> list[Any]:
    """Labelled clean records with a finding of every kind twice, a quarter and three quarters into the file."""
    records: list[Any] = [
        {**r, "category": ("qa", "summary", "brainstorm")[i % 3]} for i, r in enumerate(clean_records(n))
    ]
    for at in (n // 4, 3 * n // 4):
        records[at] = "{broken"
        records[at + 1] = ""
        records[at + 2] = "[1, 2]"
        records[at + 3] = {**records[at + 5], "output": "   "}
        records[at + 4]["output"] += " Mail jane.doe@acme-mail.com or call (415) 867-5334."
        records[at + 6]["output"] += " Hello {{name}}."
    records[n - 3]["output"] = "word " * 4000
    records[n - 2] = dict(records[3])
    records[n - 1] = {**records[5], "instruction": records[5]["instruction"].upper() + "!"}
    return records


def test_line_numbers_across_reader_blocks(tmp_path: Path) -> None:
    report = validate_file(write_jsonl(tmp_path, messy_records(3000)))  # about 600 KB: many blocks
    assert check_lines(report, "json") == [751, 753, 2251, 2253]
    assert check_lines(report, "empty") == [754, 2254]
    assert check_lines(report, "pii") == [755, 2255]
    assert check_lines(report, "placeholders") == [757, 2257]
    assert check_lines(report, "length") == [2998]
    assert check_lines(report, "duplicates") == [2999] and "line 4" in report.check("duplicates").examples[0]
    assert check_lines(report, "near_duplicates") == [3000]
    assert set(report.label_distribution) == {"qa", "summary", "brainstorm"}
    assert sum(report.label_distribution.values()) == report.valid_rows == 2994


def test_line_ranges_start_at_line_starts_and_cover_the_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, clean_records(500))
    data = path.read_bytes()
    ranges = line_ranges(path, 3)
    assert len(ranges) == 3 and ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(end == start for (_, end), (start, _) in zip(ranges, ranges[1:]))
    assert all(data[start - 1 : start] == b"\n" for start, _ in ranges[1:])


@pytest.mark.parametrize("workers", [2, 3])
def test_a_large_file_scanned_in_parts_by_worker_processes_gets_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    path = write_jsonl(tmp_path, messy_records(3000))
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes().removesuffix(b"\n"))  # both ends of the file are edge cases
    monkeypatch.setenv("RMN_LORA_VALIDATION_WORKERS", "1")
    alone = validate_file(path)
    assert alone.valid_rows == 2994  # the last line, without its newline, is read too
    monkeypatch.setattr(validation, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setenv("RMN_LORA_VALIDATION_WORKERS", str(workers))
    in_parts = validate_file(path)
    assert validation._WORKERS is not None and validation._WORKERS.count == workers  # it ran in worker processes
    assert in_parts == alone
    assert check_lines(in_parts, "duplicates") == [2999]  # a duplicate of line 4, found across the parts


def test_when_a_worker_dies_the_file_is_scanned_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jsonl(tmp_path, messy_records(3000))
    monkeypatch.setenv("RMN_LORA_VALIDATION_WORKERS", "1")
    alone = validate_file(path)
    monkeypatch.setattr(validation, "_WORKERS_RETIRED", False)  # restored after the test
    monkeypatch.setattr(validation, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setenv("RMN_LORA_VALIDATION_WORKERS", "2")
    validate_file(path)
    assert validation._WORKERS is not None
    worker = validation._WORKERS._processes[1]
    worker.kill()
    worker.wait()
    assert validate_file(path) == alone
    assert validation._WORKERS is None and validation._WORKERS_RETIRED


# --- score and bands ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (100, "Excellent"),
        (95, "Excellent"),
        (94, "Good"),
        (90, "Good"),
        (89, "Fair"),
        (85, "Fair"),
        (84, "Poor"),
        (0, "Poor"),
    ],
)
def test_band_boundaries(score: int, band: str) -> None:
    assert quality_band(score)[0] == band


def test_ten_percent_malformed_is_poor(tmp_path: Path) -> None:
    records: list[Any] = clean_records(100)
    for index in range(0, 100, 10):
        records[index] = "{not json"
    report = validate_file(write_jsonl(tmp_path, records))
    assert report.check("json").count == 10
    assert report.band == "Poor" and report.quality_score < 85


def test_no_valid_rows_scores_zero(tmp_path: Path) -> None:
    report = validate_file(write_jsonl(tmp_path, [{"foo": i} for i in range(5)]))
    assert report.kind is None and report.valid_rows == 0
    assert report.quality_score == 0 and report.band == "Poor"
    assert report.check("required").lines == [1, 2, 3, 4, 5]


def test_issue_lists_are_capped_with_the_total_kept(tmp_path: Path) -> None:
    records: list[Any] = [*clean_records(5), *["{bad"] * 600]
    report = validate_file(write_jsonl(tmp_path, records))
    json_check = report.check("json")
    assert json_check.count == 600 == report.issue_count
    assert json_check.lines == list(range(6, 106))
    assert len(report.issues) == 100 and len(json_check.examples) == 5


# --- files that are not datasets at all -----------------------------------------------------------


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(InvalidFile, match="empty"):
        validate_file(path)


def test_utf16_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(codecs.BOM_UTF16_LE + json.dumps(clean_records(1)[0]).encode("utf-16-le"))
    with pytest.raises(InvalidFile, match="UTF-16"):
        validate_file(path)


def test_latin1_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    line = json.dumps({"instruction": "Café", "output": "Crème brûlée"}, ensure_ascii=False) + "\n"
    path.write_bytes((line * 3).encode("latin-1"))
    with pytest.raises(InvalidFile, match="not UTF-8") as error:
        validate_file(path)
    assert error.value.line == 1


def test_one_latin1_line_in_a_utf8_file_is_an_issue(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, clean_records(10))
    path.write_bytes(path.read_bytes() + b'{"instruction": "caf\xe9", "output": "x"}\n')
    report = validate_file(path)
    assert check_lines(report, "json") == [11] and "UTF-8" in report.check("json").examples[0]


def test_unsupported_extension_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(InvalidFile, match="Unsupported file type"):
        validate_file(path)
