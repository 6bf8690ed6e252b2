"""Dataset quality report: one streaming pass, a 0-100 score, issues by line.

Score = 100 - sum of penalties, penalty = weight x min(1, affected_fraction x sensitivity), so a
check costs its full weight once `1 / sensitivity` of the rows are affected. A file with no
valid rows scores 0. `json`, `required` and `types` count against all rows read; the other
checks against the valid rows (those that could be read as the dataset kind).

| check           | weight | sensitivity | full at | flags                                                         |
|-----------------|-------:|------------:|--------:|---------------------------------------------------------------|
| json            |     30 |          10 |     10% | lines that are not a readable JSON object / CSV row           |
| required        |     25 |          10 |     10% | records without a field the kind requires                     |
| types           |     20 |          10 |     10% | wrong types: output an object, messages not a list, bad role  |
| empty           |     40 |           3 |     33% | empty or whitespace-only required text, empty chat turns      |
| pii             |     40 |           3 |     33% | emails, phone numbers, Luhn-valid card numbers, IPv4          |
| duplicates      |     10 |          10 |     10% | the same text in every field as an earlier record             |
| near_duplicates |      5 |          10 |     10% | the same once case, punctuation and whitespace are ignored    |
| length          |      5 |           5 |     20% | too long or answer far too short (estimated tokens)           |
| balance         |      5 |           5 |    +0.2 | a class above 80% or below 5% of the rows                     |
| placeholders    |     40 |           1 |    100% | unfilled template placeholders such as {{name}}               |
| dpo_identical   |     10 |          10 |     10% | DPO pairs whose chosen and rejected answers are the same      |

For balance the "fraction" is how far the worst class is past its limit (a 90% majority is
0.1 past 80%), so a single-class `label` costs the full weight. Empty answers, personal data
and placeholders are what a trainer must not learn, so their deduction keeps growing with the
share of records affected (1.2 points per 1% up to 40 for the first two, 0.4 per 1% for
placeholders, whose few occurrences are easy to fix): a file whose answers are mostly empty, or
mostly "I am {{name}}", cannot be Good. A file the import refuses (any `json`, `required` or
`types` finding) scores at most 84. Bands: 95-100 Excellent, 90-94 Good, 85-89 Fair,
below 85 Poor.

Memory stays flat however large the records are: per valid row the scan keeps its line number,
the sizes of its text and answer and two 8-byte hashes in compact arrays (28 bytes a row; the
duplicate sort at the end briefly adds about 16 more), plus counters, at most 100 sampled issues
per check and one block of about 64 KB of lines with its records, dropped once it is scanned.
Tokens are an estimate (UTF-8 bytes / 4), not a tokenizer count.

Speed: the reader parses a block of lines with one C-level map, plain alpaca blocks are checked
with C-level maps too, and the byte-level work runs once per block. A JSONL file of 16 MB or more
is scanned in parts by `validation_workers` processes (default: 2, or 1 on a 1-core machine;
registry.validation_parts says why they are fresh interpreters, not forks of the server), whose
findings are joined in file order.
"""

import gc
import math
import re
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson
from pydantic import BaseModel, Field

from registry.errors import InvalidFile
from registry.pii import pii_candidates, scan_pii, text_batch
from registry.readers import RecordBlock, detect_format, iter_blocks, jsonl_blocks, line_ranges, utf8_source
from registry.settings import get_settings
from registry.shapes import (
    REQUIRED_FIELDS,
    DatasetKind,
    ShapeError,
    answer_message,
    detect_kind,
    message_text,
    to_canonical,
)
from registry.validation_parts import PartsFailed, PartWorkers

Band = Literal["Excellent", "Good", "Fair", "Poor"]
BANDS: tuple[tuple[int, Band, str], ...] = (
    (95, "Excellent", "Ready for production training"),
    (90, "Good", "Minor issues, safe to use"),
    (85, "Fair", "Review issues before training"),
    (0, "Poor", "Needs cleanup"),
)
TOKEN_METHOD = "estimate: UTF-8 bytes / 4 (no tokenizer)"
MAX_LINES = 100
MAX_EXAMPLES = 5
MAX_ISSUES = 500
DETECT_SAMPLE = 200
LABEL_FIELDS = ("label", "task", "category")
MAX_CLASSES = 50
MAJORITY_LIMIT = 0.8
MINORITY_LIMIT = 0.05
SHORT_ANSWER_SHARE = 0.05
REFUSED_MAX_SCORE = 84  # the top of "Poor": a file the import refuses is never ready to train on
PARALLEL_MIN_BYTES = 16 << 20  # below this, starting the worker processes costs more than they save


class CheckSpec(NamedTuple):
    title: str
    weight: float
    sensitivity: float


CHECKS: dict[str, CheckSpec] = {
    "json": CheckSpec("JSON validity", 30, 10),
    "required": CheckSpec("Required fields", 25, 10),
    "types": CheckSpec("Field types", 20, 10),
    "empty": CheckSpec("Empty values", 40, 3),
    "pii": CheckSpec("Personal data (PII)", 40, 3),
    "duplicates": CheckSpec("Exact duplicates", 10, 10),
    "near_duplicates": CheckSpec("Near duplicates", 5, 10),
    "length": CheckSpec("Length outliers", 5, 5),
    "balance": CheckSpec("Label / task balance", 5, 5),
    "placeholders": CheckSpec("Unfilled placeholders", 40, 1),
    "dpo_identical": CheckSpec("DPO chosen = rejected", 10, 10),
}
_STRUCTURAL = {"json", "required", "types"}
_ALIASES = {
    "messages": ("messages", "conversations", "prompt"),
    "prompt": ("prompt", "conversations", "messages", "input", "chosen"),
    "completion": ("completion", "conversations", "messages"),
    "chosen": ("chosen", "preferred_output"),
    "rejected": ("rejected", "non_preferred_output"),
}
_PLACEHOLDER = re.compile(r"\{\{\s*[A-Za-z_][\w.-]{0,39}\s*\}\}")


class Issue(BaseModel):
    """One finding at a line of the file (and the record it is in, counting from 1); None for dataset-wide ones."""

    line: int | None
    check: str
    message: str
    record: int | None = None


class CheckResult(BaseModel):
    id: str
    title: str
    weight: float
    applicable: bool = True
    count: int = 0
    affected_fraction: float = 0.0
    penalty: float = 0.0
    lines: list[int] = Field(default_factory=list, description="First line numbers affected (at most 100).")
    examples: list[str] = Field(default_factory=list)
    note: str = ""


class TokenStats(BaseModel):
    min: int
    median: int
    p95: int
    max: int
    method: str = TOKEN_METHOD


class QualityReport(BaseModel):
    source: str
    format: str
    kind: DatasetKind | None
    rows: int = Field(description="Records the file holds, readable or not (blank lines are not records).")
    valid_rows: int = Field(description="Records read as the dataset kind; the other checks count against these.")
    quality_score: int = Field(ge=0, le=100)
    band: Band
    band_advice: str
    refused: Issue | None = Field(
        default=None,
        description="Where the import stops: the first record it cannot read as the kind. A refused file scores "
        f"at most {REFUSED_MAX_SCORE} (Poor), whatever its other checks say.",
    )
    checks: list[CheckResult]
    issues: list[Issue] = Field(description="First issues by line (at most 500); issue_count has the total.")
    issue_count: int
    tokens: TokenStats | None
    label_field: str | None
    label_distribution: dict[str, int]

    def check(self, check_id: str) -> CheckResult:
        return next(c for c in self.checks if c.id == check_id)

    @property
    def summary(self) -> str:
        """How many of the file's records were read, and whether the import takes the file."""
        read = f"Read {self.valid_rows:,} of the {self.rows:,} records in the file as {self.kind or 'a dataset'}"
        if self.refused is None:
            return f"{read}."
        return f"{read}; the import refuses it at line {self.refused.line}: {self.refused.message}"


def quality_band(score: int) -> tuple[Band, str]:
    """Seed 001's band and advice for a 0-100 score."""
    return next((band, advice) for floor, band, advice in BANDS if score >= floor)


def validate_file(
    path: str | Path,
    *,
    kind: DatasetKind | str | None = None,
    filename: str | None = None,
    encoding: str | None = None,
) -> QualityReport:
    """Score a CSV / JSON / JSONL dataset in one streaming pass; the kind is detected unless given.

    It reads the file with the import's readers and shape rules, so a record the import refuses is
    an issue here and the report's `refused` says where the import would stop. Raises InvalidFile
    when the file is not a dataset file at all (unsupported type, empty, not text in `encoding`).
    """
    with utf8_source(Path(path), encoding) as source:
        return _validate(source, kind, filename or Path(path).name)


def _validate(path: Path, kind: DatasetKind | str | None, filename: str) -> QualityReport:
    fmt = detect_format(path, filename)
    settings = get_settings()
    blocks = iter_blocks(path, fmt, settings.max_line_bytes)
    head = _head(blocks)
    sample = [record for block in head for record in block.records][:DETECT_SAMPLE]
    scan = _Scan(DatasetKind(kind) if kind else _detect(sample), _label_field(sample))
    workers = settings.validation_workers if fmt == "jsonl" and path.stat().st_size >= PARALLEL_MIN_BYTES else 1
    if workers > 1:
        blocks.close()
        scan = _scan_in_parts(path, scan, workers, settings.max_line_bytes)
    else:
        with _gc_paused():
            scan.feed(chain(head, blocks))
    _refuse_unreadable(scan)
    return scan.report(filename, fmt)


def _scan_in_parts(path: Path, scan: "_Scan", workers: int, max_line_bytes: int) -> "_Scan":
    """Scan a large JSONL file in `workers` parts at once (see registry.validation_parts), joined in file order.

    If the worker processes cannot run, the file is scanned here instead, and so are later ones.
    """
    tasks = [
        (path, start, end, scan.kind, scan.label_field, max_line_bytes) for start, end in line_ranges(path, workers)
    ]
    try:
        parts = _workers(workers).run(tasks)
    except PartsFailed:
        _retire_workers()
        with _gc_paused():
            scan.feed(iter_blocks(path, "jsonl", max_line_bytes))
        return scan
    offset = 0
    for lines, part in parts:
        scan.absorb(part, offset)
        offset += lines
    return scan


def scan_part(
    path: Path, start: int, end: int, kind: DatasetKind | None, label_field: str | None, max_line_bytes: int
) -> tuple[int, "_Scan"]:
    """One part of a file, in a worker process: the lines it read and what it found (its lines numbered from 1)."""
    scan = _Scan(kind, label_field)
    read = 0

    def blocks() -> Iterator[RecordBlock]:
        nonlocal read
        read = yield from jsonl_blocks(path, max_line_bytes, start, end)

    with _gc_paused():
        scan.feed(blocks())
    return read, scan


_WORKERS: PartWorkers | None = None
_WORKERS_RETIRED = False
_WORKERS_LOCK = threading.Lock()


def _workers(count: int) -> PartWorkers:
    """The worker processes, started once (about half a second) and kept for every later large file."""
    global _WORKERS
    with _WORKERS_LOCK:
        if _WORKERS_RETIRED:
            raise PartsFailed("validation worker processes failed before; scanning in-process")
        if _WORKERS is None or _WORKERS.count != count:
            if _WORKERS is not None:
                _WORKERS.close()
            try:
                _WORKERS = PartWorkers(count)
            except OSError as error:
                raise PartsFailed(f"could not start validation workers: {error}") from error
        return _WORKERS


def _retire_workers() -> None:
    global _WORKERS, _WORKERS_RETIRED
    with _WORKERS_LOCK:
        if _WORKERS is not None:
            _WORKERS.close()
        _WORKERS, _WORKERS_RETIRED = None, True


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The pass makes millions of short-lived containers and no cycles: cyclic GC runs would find nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _head(blocks: Iterator[RecordBlock]) -> list[RecordBlock]:
    """The first blocks, until they hold DETECT_SAMPLE records or errors (a file of bad lines is not kept whole)."""
    head: list[RecordBlock] = []
    seen = 0
    for block in blocks:
        head.append(block)
        seen += len(block.records) + len(block.errors)
        if seen >= DETECT_SAMPLE:
            break
    return head


def _detect(sample: list[dict[str, Any]]) -> DatasetKind | None:
    try:
        return detect_kind(sample).kind if sample else None
    except InvalidFile:
        return None


def _label_field(sample: list[dict[str, Any]]) -> str | None:
    """The class field balance is measured on: the first of label / task / category most records have."""
    return next((f for f in LABEL_FIELDS if sample and sum(f in r for r in sample) * 2 >= len(sample)), None)


def _refuse_unreadable(scan: "_Scan") -> None:
    if scan.rows == 0:
        raise InvalidFile("The file holds no records to validate.")
    first = scan.tally["json"].samples[:1]
    if scan.parsed == 0 and first and "UTF-8" in first[0][1]:
        raise InvalidFile(f"The file is not UTF-8 text: {first[0][1]}", line=first[0][0])


class _Tally:
    """A check's running count with the first findings kept for the report."""

    __slots__ = ("count", "samples")

    def __init__(self) -> None:
        self.count = 0
        self.samples: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if len(self.samples) < MAX_LINES:
            self.samples.append((line, message[:200]))

    def absorb(self, other: "_Tally", line_offset: int) -> None:
        """Add the findings of the next part of the file, whose lines start after `line_offset`."""
        self.count += other.count
        room = MAX_LINES - len(self.samples)
        self.samples += [(line + line_offset, message) for line, message in other.samples[:room]]


Parts = tuple[str, str, tuple[str, ...], bool]  # all text joined, the answer, empty fields, chosen == rejected


class _Scan:
    """What one pass remembers: counters, capped samples and fixed-size numbers per valid row.

    Plain alpaca blocks (every registry file) take no per-record Python at all: their fields are
    read, joined and checked with C-level maps in `_plain_alpaca`. Other blocks go through
    `_records` one record at a time. Either way the byte-level work (hashes, the near-duplicate
    squeeze, the PII prefilter) runs once per block in `_flush`.
    """

    def __init__(self, kind: DatasetKind | None, label_field: str | None) -> None:
        self.kind = kind
        self.parts: Callable[[dict[str, Any]], Parts] | None = _PARTS[kind] if kind else None
        self.label_field = label_field
        self.labels: Counter[Any] | None = Counter() if label_field else None
        self.valid = 0
        self.tally = {check: _Tally() for check in CHECKS}
        self.pii_kinds: Counter[str] = Counter()
        # Per valid row: line number, UTF-8 size of its text, size of its answer, and two 8-byte
        # hashes (exact and near-duplicate keys).
        self.lines, self.sizes, self.answers = array("I"), array("I"), array("I")
        self.exact, self.near = array("q"), array("q")
        self.empty_rows = array("I")  # reported once, as empty: left out of duplicate and length checks
        self.record_lines = array("I")  # the line of every record, readable or not: issues name their record

    def feed(self, blocks: Iterable[RecordBlock]) -> None:
        for block in blocks:
            self.record_lines.extend(block.lines)
            for line, error in block.errors:
                self.tally["json"].add(line, error)
                self.record_lines.append(line)
            if not (self.kind is DatasetKind.ALPACA and self._plain_alpaca(block)):
                self._records(block)

    def _plain_alpaca(self, block: RecordBlock) -> bool:
        """Scan a block whose records all have text instruction, input and output, none of them blank.

        False (nothing counted) when some record is not like that: `_records` then checks each.
        Such records skip `to_canonical`, which would return them as they are.
        """
        try:
            fields = list(map(_ALPACA_FIELDS, block.records))
            texts = list(map("\n".join, fields))
        except (KeyError, TypeError):
            return False
        outputs = list(map(itemgetter(2), fields))
        if not (all(map(str.strip, map(itemgetter(0), fields))) and all(map(str.strip, outputs))):
            return False
        labels = list(map(dict.get, block.records, repeat(self.label_field))) if self.labels is not None else []
        self._flush(texts, block.lines, list(map(len, outputs)), labels)
        return True

    def _records(self, block: RecordBlock) -> None:
        """Scan a block one record at a time: canonical form, types, empty fields, DPO pairs."""
        texts: list[str] = []
        lines: list[int] = []
        answers: list[int] = []
        labels: list[Any] = []
        for line, record in zip(block.lines, block.records, strict=True):
            if (canonical := self._canonical(line, record)) is None:
                continue
            text, answer, empty, identical = self.parts(canonical)  # type: ignore[misc]
            if empty:
                self._empty(line, self.valid + len(texts), empty)
            if identical:
                self.tally["dpo_identical"].add(line, "chosen and rejected are the same answer.")
            texts.append(text)
            lines.append(line)
            answers.append(len(answer))
            if self.labels is not None:
                labels.append(canonical.get(self.label_field))  # type: ignore[arg-type]
        self._flush(texts, lines, answers, labels)

    def absorb(self, other: "_Scan", line_offset: int) -> None:
        """Append what a scan of the next part of the file found; its line numbers start after `line_offset`."""
        rows = len(self.lines)
        self.valid += other.valid
        for check, tally in other.tally.items():
            self.tally[check].absorb(tally, line_offset)
        self.pii_kinds.update(other.pii_kinds)
        if self.labels is not None:
            if other.labels is None:
                self.labels = None
            else:
                self._add_labels(other.labels)
        self.lines.frombytes((np.frombuffer(other.lines, np.uint32) + np.uint32(line_offset)).tobytes())
        self.record_lines.frombytes((np.frombuffer(other.record_lines, np.uint32) + np.uint32(line_offset)).tobytes())
        self.empty_rows.frombytes((np.frombuffer(other.empty_rows, np.uint32) + np.uint32(rows)).tobytes())
        self.sizes.extend(other.sizes)
        self.answers.extend(other.answers)
        self.exact.extend(other.exact)
        self.near.extend(other.near)

    @property
    def parsed(self) -> int:
        return self.valid + self.tally["required"].count + self.tally["types"].count

    @property
    def rows(self) -> int:
        return self.parsed + self.tally["json"].count

    def _flush(self, texts: list[str], lines: range | list[int], answers: list[int], labels: list[Any]) -> None:
        """Hash, squeeze and PII-screen a block's texts with C-level maps and whole-block scans."""
        if not texts:
            return
        batch = text_batch(texts)
        texts = batch.texts
        self.valid += len(texts)
        self.lines.extend(lines)
        self.answers.extend(answers)
        sizes = batch.lengths if batch.joined.isascii() else _lengths(map(str.encode, texts))
        self.sizes.frombytes(sizes.astype(np.uint32).tobytes())
        self.exact.frombytes(np.fromiter(map(hash, texts), np.int64, len(texts)).tobytes())
        self.near.frombytes(np.fromiter(map(hash, batch.squeezed), np.int64, len(texts)).tobytes())
        if "{" in batch.joined and "{{" in batch.joined:
            for line, text in zip(lines, texts, strict=True):
                if "{{" in text:
                    self._placeholders(line, text)
        for row in pii_candidates(batch):
            self._pii(lines[row], texts[row])
        if labels:
            self._add_labels(_class_counts(labels))

    def _canonical(self, line: int, record: dict[str, Any]) -> dict[str, Any] | None:
        if self.kind is None:
            fields = ", ".join(list(record)[:8]) or "none"
            self.tally["required"].add(line, f"not a recognised dataset record (fields: {fields}).")
            return None
        try:
            return to_canonical(record, self.kind)
        except ShapeError as exc:
            if missing := _missing_fields(record, self.kind):
                self.tally["required"].add(
                    line, f"missing required field(s) for {self.kind.value}: {', '.join(missing)}."
                )
            else:
                self.tally["types"].add(line, str(exc))
            return None

    def _empty(self, line: int, row: int, fields: tuple[str, ...]) -> None:
        self.tally["empty"].add(line, f"empty {', '.join(fields)}.")
        self.empty_rows.append(row)

    def _placeholders(self, line: int, text: str) -> None:
        if found := _PLACEHOLDER.findall(text):
            self.tally["placeholders"].add(line, f"unfilled placeholder(s) {', '.join(dict.fromkeys(found))}.")

    def _pii(self, line: int, text: str) -> None:
        if hits := scan_pii(text):
            self.pii_kinds.update(hit.kind for hit in hits)
            self.tally["pii"].add(line, "; ".join(hit.description for hit in hits[:3]) + ".")

    def _add_labels(self, counts: Counter[Any]) -> None:
        """Past MAX_CLASSES distinct values the field is free text, not a label: stop counting."""
        assert self.labels is not None
        self.labels.update(counts)
        if len(self.labels) > MAX_CLASSES:
            self.labels = None

    def report(self, source: str, fmt: str) -> QualityReport:
        lines = np.frombuffer(self.lines, dtype=np.uint32)
        valid = len(lines)
        counted = np.ones(valid, dtype=bool)  # empty rows are reported once, as empty, and not again
        counted[np.frombuffer(self.empty_rows, dtype=np.uint32)] = False
        notes = self._find_repeats(lines, counted)
        tokens = _estimated_tokens(self.sizes)
        notes |= self._find_length_outliers(lines[counted], tokens[counted], _estimated_tokens(self.answers)[counted])
        checks = [self._result(check, valid, notes.get(check, "")) for check in CHECKS if check != "balance"]
        checks.insert(list(CHECKS).index("balance"), self._balance(valid))
        if self.kind is not DatasetKind.DPO:
            checks[list(CHECKS).index("dpo_identical")].applicable = False
        total = sum(c.penalty for c in checks)
        score = max(0, math.floor(100 - total + 0.5)) if valid else 0
        record_lines = np.sort(np.frombuffer(self.record_lines, dtype=np.uint32))

        def issue(line: int, check: str, message: str) -> Issue:
            return Issue(line=line, check=check, message=message, record=int(np.searchsorted(record_lines, line)) + 1)

        issues = sorted(
            (issue(line, check, message) for check, t in self.tally.items() for line, message in t.samples),
            key=lambda issue: (issue.line is None, issue.line or 0),
        )
        refused = next((i for i in issues if i.check in _STRUCTURAL), None)
        if refused is not None:
            score = min(score, REFUSED_MAX_SCORE)
        band, advice = quality_band(score)
        if refused is not None:
            advice = f"The import refuses this file at line {refused.line}: fix that record first"
        balance = checks[list(CHECKS).index("balance")]
        if balance.count:
            issues.append(Issue(line=None, check="balance", message=balance.note))
        return QualityReport(
            source=source,
            format=fmt,
            kind=self.kind,
            rows=self.rows,
            valid_rows=valid,
            quality_score=score,
            band=band,
            band_advice=advice,
            refused=refused,
            checks=checks,
            issues=issues[:MAX_ISSUES],
            issue_count=sum(t.count for t in self.tally.values()) + (1 if balance.count else 0),
            tokens=_token_stats(tokens),
            label_field=self.label_field if self.labels is not None else None,
            label_distribution={_label_name(k): v for k, v in Counter(self.labels or {}).most_common()},
        )

    def _result(self, check: str, valid: int, note: str) -> CheckResult:
        spec, tally = CHECKS[check], self.tally[check]
        fraction = tally.count / max(1, self.rows if check in _STRUCTURAL else valid)
        if check == "pii" and self.pii_kinds:
            note = ", ".join(f"{kind} {count}" for kind, count in self.pii_kinds.most_common()) + " (values masked)"
        return CheckResult(
            id=check,
            title=spec.title,
            weight=spec.weight,
            count=tally.count,
            affected_fraction=round(fraction, 4),
            penalty=round(spec.weight * min(1.0, fraction * spec.sensitivity), 2),
            lines=[line for line, _ in tally.samples],
            examples=[f"line {line}: {message}" for line, message in tally.samples[:MAX_EXAMPLES]],
            note=note,
        )

    def _find_repeats(self, lines: np.ndarray, counted: np.ndarray) -> dict[str, str]:
        """Near duplicates first; exact ones are among them, so only those rows need a second sort."""
        near_rows, near_of = _repeats(np.frombuffer(self.near, dtype=np.int64), counted)
        involved = np.zeros(len(counted), dtype=bool)
        involved[near_rows] = involved[near_of] = True
        exact_rows, exact_of = _repeats(np.frombuffer(self.exact, dtype=np.int64), involved)
        fresh = ~np.isin(near_rows, exact_rows)
        for row, of in zip(exact_rows.tolist(), exact_of.tolist(), strict=True):
            self.tally["duplicates"].add(int(lines[row]), f"same text as line {lines[of]}.")
        for row, of in zip(near_rows[fresh].tolist(), near_of[fresh].tolist(), strict=True):
            message = f"same text as line {lines[of]} apart from case, punctuation or spacing."
            self.tally["near_duplicates"].add(int(lines[row]), message)
        return {
            "duplicates": "the same text in every field (other fields such as ids are ignored)",
            "near_duplicates": "the same text once case, punctuation and whitespace are ignored",
        }

    def _find_length_outliers(self, lines: np.ndarray, tokens: np.ndarray, answers: np.ndarray) -> dict[str, str]:
        if len(lines) < 4:
            return {"length": "too few rows for length statistics"}
        q1, q3 = np.percentile(tokens, [25, 75])
        limit = int(max(q3 + 3 * (q3 - q1), 2 * q3))
        median_answer = float(np.median(answers))
        too_long = tokens > limit
        too_short = (answers > 0) & (answers < median_answer * SHORT_ANSWER_SHARE)
        for row in np.flatnonzero(too_long | too_short).tolist():
            message = (
                f"about {tokens[row]} tokens, above the {limit}-token outlier limit."
                if too_long[row]
                else f"the answer is about {answers[row]} tokens; the median answer is {median_answer:.0f}."
            )
            self.tally["length"].add(int(lines[row]), message)
        return {
            "length": f"{TOKEN_METHOD}; too long above {limit} tokens (max of Q3 + 3 x IQR and 2 x Q3); "
            f"too short: answer under {SHORT_ANSWER_SHARE:.0%} of the median answer ({median_answer:.0f} tokens)"
        }

    def _balance(self, valid: int) -> CheckResult:
        spec = CHECKS["balance"]
        result = CheckResult(id="balance", title=spec.title, weight=spec.weight, applicable=False)
        if not self.label_field:
            result.note = "not applicable: no label, task or category field"
            return result
        if self.labels is None:
            result.note = f"not applicable: {self.label_field!r} has more than {MAX_CLASSES} distinct values"
            return result
        shares = {name: count / max(1, valid) for name, count in self.labels.items()}
        if len(shares) < 2 and self.label_field != "label":
            result.note = f"not applicable: one {self.label_field} only"
            return result
        result.applicable = True
        majority = max(shares.values(), default=0.0)
        rare = {name: share for name, share in shares.items() if share < MINORITY_LIMIT}
        excess = max(majority - MAJORITY_LIMIT, max((MINORITY_LIMIT - s for s in rare.values()), default=0.0), 0.0)
        described = ", ".join(f"{_label_name(n)} {s:.0%}" for n, s in sorted(shares.items(), key=lambda i: -i[1])[:8])
        result.note = f"{self.label_field}: {described}"
        if excess > 0:
            offending = [n for n, s in shares.items() if s > MAJORITY_LIMIT or s < MINORITY_LIMIT]
            result.count = sum(self.labels[n] for n in offending)
            result.affected_fraction = round(excess, 4)
            result.penalty = round(spec.weight * min(1.0, excess * spec.sensitivity), 2)
            limits = f"no class above {MAJORITY_LIMIT:.0%} or below {MINORITY_LIMIT:.0%}"
            result.note = f"imbalanced {result.note} (limits: {limits})"
        return result


def _class_counts(values: list[Any]) -> Counter[Any]:
    try:
        return Counter(values)
    except TypeError:  # lists or objects as labels: count their JSON text
        return Counter(orjson.dumps(v).decode()[:60] if isinstance(v, (list, dict)) else v for v in values)


def _missing_fields(record: dict[str, Any], kind: DatasetKind) -> list[str]:
    return [f for f in REQUIRED_FIELDS[kind] if not any(alias in record for alias in _ALIASES.get(f, (f,)))]


def _repeats(keys: np.ndarray, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counted rows whose key an earlier counted row already had, in file order, each with that first row.

    One (unstable) sort of the keys; what follows is sized by the duplicates, not by the rows.
    """
    if counted.all():
        order = np.argsort(keys)
    else:
        rows = np.flatnonzero(counted)
        order = rows[np.argsort(keys[rows])]
    ranked = keys[order]
    repeat = np.flatnonzero(ranked[1:] == ranked[:-1]) + 1
    if not len(repeat):
        return repeat, repeat
    members = np.union1d(repeat - 1, repeat)  # sorted positions of every row of a repeated key
    group = np.cumsum(np.r_[True, ranked[members[1:]] != ranked[members[:-1]]]) - 1
    member_rows = order[members]
    first = np.full(group[-1] + 1, len(keys))
    np.minimum.at(first, group, member_rows)
    later = member_rows != first[group]
    in_file_order = np.argsort(member_rows[later])
    return member_rows[later][in_file_order], first[group[later]][in_file_order]


def _estimated_tokens(sizes: array) -> np.ndarray:
    """About 4 UTF-8 bytes (or characters, for answers) per token, rounded up."""
    return (np.frombuffer(sizes, dtype=np.uint32) + 3) // 4


def _token_stats(tokens: np.ndarray) -> TokenStats | None:
    if not len(tokens):
        return None
    median, p95 = np.percentile(tokens, [50, 95])
    return TokenStats(min=int(tokens.min()), median=int(round(median)), p95=int(round(p95)), max=int(tokens.max()))


def _label_name(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "(missing)" if value is None else str(value)


def _blank(**fields: str) -> tuple[str, ...]:
    return tuple(name for name, value in fields.items() if not value.strip())


def _alpaca_parts(record: dict[str, Any]) -> Parts:
    instruction, output = record["instruction"], record["output"]
    empty = () if instruction.strip() and output.strip() else _blank(instruction=instruction, output=output)
    return f"{instruction}\n{record['input']}\n{output}", output, empty, False


def _chat_parts(record: dict[str, Any]) -> Parts:
    """An assistant turn that is only a tool call is an answer, not an empty message."""
    messages = record["messages"]
    empty = tuple(
        f"message {index} ({m['role']})"
        for index, m in enumerate(messages, 1)
        if m["role"] != "system" and not m["content"].strip() and not m.get("tool_calls")
    )
    answers = [message_text(m) for m in messages if m["role"] == "assistant"]
    if not answers:
        empty += ("assistant turn (there is none)",)
    return "\n".join(map(message_text, messages)), answers[-1] if answers else "", empty, False


def _prompt_texts(prompt: str | list[dict[str, Any]]) -> tuple[str, ...]:
    return (prompt,) if isinstance(prompt, str) else tuple(map(message_text, prompt))


def _answer_text(answer: str | list[dict[str, Any]]) -> str:
    """A preference or KTO answer's text; a tool call is an answer (its name and arguments), never an empty one."""
    return message_text(answer_message(answer))


def _dpo_parts(record: dict[str, Any]) -> Parts:
    prompt, chosen, rejected = record["prompt"], _answer_text(record["chosen"]), _answer_text(record["rejected"])
    prompt_texts = _prompt_texts(prompt)
    empty = _blank(prompt="".join(prompt_texts), chosen=chosen, rejected=rejected)
    identical = bool(chosen.strip()) and chosen.strip() == rejected.strip()
    return "\n".join((*prompt_texts, chosen, rejected)), chosen, empty, identical


def _kto_parts(record: dict[str, Any]) -> Parts:
    prompt_texts, completion = _prompt_texts(record["prompt"]), _answer_text(record["completion"])
    empty = _blank(prompt="".join(prompt_texts), completion=completion)
    return "\n".join((*prompt_texts, completion)), completion, empty, False


def _evaluation_parts(record: dict[str, Any]) -> Parts:
    prompt, reference = record["prompt"], record["reference"]
    return f"{prompt}\n{reference}", reference, _blank(prompt=prompt, reference=reference), False


_ALPACA_FIELDS = itemgetter("instruction", "input", "output")
_PARTS: dict[DatasetKind, Callable[[dict[str, Any]], Parts]] = {
    DatasetKind.ALPACA: _alpaca_parts,
    DatasetKind.CHAT: _chat_parts,
    DatasetKind.DPO: _dpo_parts,
    DatasetKind.KTO: _kto_parts,
    DatasetKind.EVALUATION: _evaluation_parts,
}


def _lengths(items: Iterable[Sized]) -> np.ndarray:
    return np.fromiter(map(len, items), np.int64)
