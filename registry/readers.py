"""Streaming readers for CSV, JSON and JSONL that report problems by line number.

Upload and validation share them, so a file is judged the same way everywhere.
"""

import codecs
import csv
import io
import json
import re
import tempfile
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from registry.errors import InvalidFile
from registry.spreadsheet import unescape_cell

FileFormat = Literal["jsonl", "json", "csv"]
EXTENSIONS: dict[str, FileFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
# CSV cells that hold nested structures (our own CSV export writes them as JSON text).
# Cells that may hold messages as JSON (a chat, a prompt, an answer that calls tools): read back when they do.
MESSAGE_CELLS = {"messages", "conversations", "chosen", "rejected", "prompt", "completion"}
JSON_CELLS = {"history", "tools"}  # always JSON when they look like it (alpaca history pairs, tool specifications)
_BOOLEANS = {"true": True, "false": False}  # a KTO label: CSV writes True / False
BLOCK_BYTES = 1 << 16  # a block and its copies stay in the L2 cache
BLOCK_RECORDS = 1000  # CSV and JSON-array records per block
_UTF16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# Encodings a file that is not UTF-8 most often is, tried in order on the bytes around the first bad one:
# Windows-1252 (Excel's "CSV" on Western Windows; a superset of Latin-1's letters) decodes almost any Western text.
_LIKELY_ENCODINGS = (
    ("cp1252", "Windows-1252"),
    ("shift_jis", "Shift-JIS"),
    ("euc_kr", "EUC-KR"),
    ("gb18030", "GB18030"),
)
# Bytes that are not UTF-8, as Python's surrogateescape error handler keeps them.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclass(slots=True)
class RawRecord:
    """One record as read: `record` is None when the line could not be parsed, and `error` says why."""

    line: int
    record: dict[str, Any] | None
    error: str | None = None


class RecordBlock(NamedTuple):
    """Records read together: `records[i]` is from line `lines[i]`; unreadable lines are (line, reason) in `errors`."""

    lines: range | list[int]
    records: list[dict[str, Any]]
    errors: list[tuple[int, str]]

    def items(self) -> list[RawRecord]:
        """The block one record at a time, in line order."""
        items = [RawRecord(line, record) for line, record in zip(self.lines, self.records, strict=True)]
        if self.errors:
            items = sorted(
                [*items, *(RawRecord(line, None, error) for line, error in self.errors)], key=attrgetter("line")
            )
        return items


def detect_format(path: Path, filename: str | None = None) -> FileFormat:
    """Trust the extension; a `.json` file that holds one object per line is read as JSONL."""
    suffix = Path(filename or path.name).suffix.lower()
    if suffix not in EXTENSIONS:
        raise InvalidFile(f"Unsupported file type {suffix or '(none)'!r}: upload a .csv, .json or .jsonl file.")
    check_encoding(path)
    fmt = EXTENSIONS[suffix]
    if fmt == "json" and _first_char(path) == "{":
        return "jsonl"
    return fmt


def check_encoding(path: Path) -> None:
    """Refuse empty files and non-UTF-8 byte order marks before any parsing starts."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head.strip():
        raise InvalidFile("The file is empty: it has no records to import.")
    for bom in _UTF16_32_BOMS:
        if head.startswith(bom):
            raise InvalidFile(
                "The file is UTF-16/UTF-32 encoded: save it as UTF-8, or import it with encoding=utf-16 (or utf-32)."
            )


def not_utf8(data: bytes, start: int) -> str:
    """What to say about the first byte of `data` that is not UTF-8 (at `start`), with the encoding it likely is."""
    column = start - data.rfind(b"\n", 0, start)
    window = data[max(0, start - 4096) : start + 4096]
    message = f"not valid UTF-8 (byte 0x{data[start]:02x} at column {column})"
    for codec, name in _LIKELY_ENCODINGS:
        try:
            window.decode(codec)
        except UnicodeDecodeError:
            continue
        return f"{message}; it looks like {name}: convert the file to UTF-8, or import it with encoding={codec}."
    return f"{message}: save the file as UTF-8, or import it with the encoding it was written in."


@contextmanager
def utf8_source(path: Path, encoding: str | None) -> Iterator[Path]:
    """The file as UTF-8: `path` itself, or a temporary UTF-8 copy when the user names another encoding.

    Lines stay where they were, so every position the readers report is a line of the original file.
    """
    if encoding is None or codecs.lookup(_known_codec(encoding)).name == "utf-8":
        yield path
        return
    codec = _known_codec(encoding)
    with tempfile.TemporaryDirectory(prefix="rmn-decode-") as folder:
        target = Path(folder) / path.name
        decoder = codecs.getincrementaldecoder(codec)(errors="strict")
        line = 1
        with open(path, "rb") as source, open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as error:
                    bad = line + chunk.count(b"\n", 0, error.start)
                    raise InvalidFile(
                        f"the file is not {encoding} text (byte 0x{chunk[error.start]:02x}); choose its real encoding.",
                        line=bad,
                    ) from None
                line += chunk.count(b"\n")
                out.write(text.encode("utf-8"))
            out.write(decoder.decode(b"", final=True).encode("utf-8"))
        yield target


def _known_codec(encoding: str) -> str:
    try:
        return codecs.lookup(encoding.strip()).name
    except LookupError:
        raise InvalidFile(
            f"Unknown encoding {encoding!r}: use a Python codec name such as utf-8, cp1252, latin-1 or utf-16."
        ) from None


def iter_records(path: Path, fmt: FileFormat, max_line_bytes: int) -> Iterator[RawRecord]:
    """Yield every record with its line number; parse problems become error records, never exceptions."""
    if fmt == "jsonl":
        for block in jsonl_blocks(path, max_line_bytes):
            yield from block.items()
    elif fmt == "json":
        yield from _iter_json_array(path, max_line_bytes)
    else:
        yield from _iter_csv(path, max_line_bytes)


def iter_blocks(path: Path, fmt: FileFormat, max_line_bytes: int) -> Iterator[RecordBlock]:
    """The records of `iter_records` a block at a time, for passes that handle many records per call."""
    if fmt == "jsonl":
        yield from jsonl_blocks(path, max_line_bytes)
        return
    items = iter_records(path, fmt, max_line_bytes)
    while batch := list(islice(items, BLOCK_RECORDS)):
        lines = [item.line for item in batch if item.record is not None]
        records = [item.record for item in batch if item.record is not None]
        errors = [(item.line, item.error or "unreadable record.") for item in batch if item.record is None]
        yield RecordBlock(lines, records, errors)


def read_strict(path: Path, fmt: FileFormat, max_line_bytes: int) -> Iterator[RawRecord]:
    """Like `iter_records`, but stop at the first bad record with an error that names its line."""
    for item in iter_records(path, fmt, max_line_bytes):
        if item.error is not None:
            raise InvalidFile(f"{item.error} Fix this line (or remove it) and upload again.", line=item.line)
        yield item


def _first_char(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(codecs.BOM_UTF8).lstrip()
    return head[:1].decode("ascii", errors="replace")


def _utf8_error(raw: bytes) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return not_utf8(raw, exc.start)
    return None


def jsonl_blocks(
    path: Path, max_line_bytes: int, start: int = 0, end: int | None = None
) -> Generator[RecordBlock, None, int]:
    """Read about BLOCK_BYTES of whole lines at a time and parse them with one C-level map.

    A block where some line is blank, too long, not JSON or not an object is read again line by
    line, which says what is wrong with each. `start` and `end` (byte offsets at line starts, see
    `line_ranges`) read a part of the file, its lines numbered from 1; the generator returns how
    many lines it read.
    """
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = (end if end is not None else path.stat().st_size) - start
        first = 1
        chunk = handle.read(min(BLOCK_BYTES, remaining))
        remaining -= len(chunk)
        if not start:
            chunk = chunk.removeprefix(codecs.BOM_UTF8)
        while chunk:
            if not chunk.endswith(b"\n") and remaining > 0:
                rest = handle.readline(min(max_line_bytes + 1, remaining))
                chunk, remaining = chunk + rest, remaining - len(rest)
                if not chunk.endswith(b"\n") and remaining > 0:  # one line too long to keep whole
                    remaining -= _skip_line(handle)
            lines = chunk.split(b"\n")
            if not lines[-1]:
                lines.pop()
            yield _parse_lines(lines, first, max_line_bytes)
            chunk, first = handle.read(min(BLOCK_BYTES, max(remaining, 0))), first + len(lines)
            remaining -= len(chunk)
    return first - 1


def line_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """`parts` byte ranges of about equal size that start and end at line boundaries."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as handle:
        for index in range(1, parts):
            handle.seek(max(cuts[-1], size * index // parts))
            if handle.tell():
                handle.readline()  # to the end of the line the cut fell in
            cuts.append(min(handle.tell(), size))
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _skip_line(handle: io.BufferedReader) -> int:
    """Read past the end of the current line without holding it whole (it may be hundreds of MB); bytes skipped."""
    skipped = 0
    while rest := handle.readline(1 << 20):
        skipped += len(rest)
        if rest.endswith(b"\n"):
            break
    return skipped


def _parse_lines(lines: list[bytes], first: int, max_line_bytes: int) -> RecordBlock:
    if max(map(len, lines)) <= max_line_bytes:
        try:
            records = list(map(orjson.loads, lines))
        except orjson.JSONDecodeError:
            pass
        else:
            if {*map(type, records)} == {dict}:
                return RecordBlock(range(first, first + len(lines)), records, [])
    numbers: list[int] = []
    records, errors = [], []
    for line, raw in enumerate(lines, first):
        if len(raw) > max_line_bytes:
            errors.append((line, f"the line is longer than {max_line_bytes // (1024 * 1024)} MB."))
            continue
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            errors.append((line, _utf8_error(raw) or f"invalid JSON ({exc.msg} at column {exc.colno})."))
            continue
        if isinstance(value, dict):
            numbers.append(line)
            records.append(value)
        else:
            errors.append((line, f"expected a JSON object, got {type(value).__name__}."))
    return RecordBlock(numbers, records, errors)


def _iter_json_array(path: Path, max_line_bytes: int) -> Iterator[RawRecord]:
    """Each record of a JSON array at the line its '{' is on; a record holding bytes that are not UTF-8 is an
    error at the line of its first bad byte, and the records after it are still read."""
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    text = data.decode("utf-8", errors="surrogateescape")
    escaped = _ESCAPED_BYTE.search(text) is not None
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        yield RawRecord(text.count("\n", 0, pos) + 1, None, "expected a JSON array of objects ('[' ...) or JSONL.")
        return
    pos = _skip_ws(text, pos + 1)
    line, counted = 1, 0
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield RawRecord(exc.lineno, None, f"invalid JSON ({exc.msg} at column {exc.colno}).")
            return
        except RecursionError:
            yield RawRecord(
                line, None, "the record is nested too deeply (JSON allows it, a dataset record never needs it)."
            )
            return
        except ValueError as exc:  # NaN / Infinity, or an integer of thousands of digits
            yield RawRecord(line, None, f"invalid JSON ({exc}).")
            return
        bad = _ESCAPED_BYTE.search(text, pos, end) if escaped else None
        problem = None if bad is not None else _record_problem(text, pos, end, max_line_bytes)
        if bad is not None:
            yield _undecodable(text, bad.start())
        elif problem:
            yield RawRecord(line, None, problem)
        elif isinstance(value, dict):
            yield RawRecord(line, value)
        else:
            yield RawRecord(line, None, f"expected a JSON object, got {type(value).__name__}.")
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
            continue
        if pos < len(text) and text[pos] == "]" and not text[_skip_ws(text, pos + 1) :].strip():
            return
        yield RawRecord(text.count("\n", 0, pos) + 1, None, "expected ',' or ']' between records.")
        return


def _undecodable(text: str, at: int, first_line: int = 1) -> RawRecord:
    """An error record for the byte surrogateescape kept at text[at], at its own line (text starts at `first_line`)."""
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    raw = text[start : end if end >= 0 else len(text)].encode("utf-8", errors="surrogateescape")
    column = len(text[start:at].encode("utf-8", errors="surrogateescape"))
    return RawRecord(first_line + text.count("\n", 0, at), None, not_utf8(raw, column) if raw else "not valid UTF-8.")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; write null or a number")


def _record_problem(text: str, start: int, end: int, max_line_bytes: int) -> str | None:
    """What JSONL lines are held to, for one record of a JSON array: the size limit, and no lone surrogate
    (orjson, which writes the library, refuses them; the standard parser lets them through)."""
    if end - start > max_line_bytes:
        return f"the record is longer than {max_line_bytes // (1024 * 1024)} MB (the limit for one record)."
    if "\\u" in text[start:end]:
        try:
            orjson.loads(text[start:end])
        except orjson.JSONDecodeError as exc:
            return f"invalid JSON ({exc.msg}); save the file as UTF-8 without unpaired \\uD800-\\uDFFF escapes."
    return None


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _iter_csv(path: Path, max_line_bytes: int) -> Iterator[RawRecord]:
    """Each row at the line it starts on; a row holding bytes that are not UTF-8 is an error at the line of its
    first bad byte, and the rows after it are still read (so the report counts every row of the file)."""
    csv.field_size_limit(max_line_bytes)
    with open(path, "rb") as binary:
        stream = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(stream)
        try:
            header = next(reader, None)
            if header and _ESCAPED_BYTE.search(",".join(header)):
                yield _undecodable_row(header, 1)
                return
            if not header or not any(cell.strip() for cell in header):
                yield RawRecord(1, None, "the CSV has no header row.")
                return
            names = [unescape_cell(cell.strip()) for cell in header]
            if "" in names:
                yield RawRecord(1, None, f"the header has an empty column name (column {names.index('') + 1}).")
                return
            if len(set(names)) != len(names):
                dupes = sorted({n for n in names if names.count(n) > 1})
                yield RawRecord(1, None, f"the header repeats column names: {', '.join(dupes)}.")
                return
            ended = reader.line_num
            for row in reader:
                line, ended = ended + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if _ESCAPED_BYTE.search("".join(row)):
                    yield _undecodable_row(row, line)
                elif len(row) != len(names):
                    yield RawRecord(line, None, f"{len(row)} values but the header has {len(names)} columns.")
                else:
                    yield RawRecord(line, {name: _cell(name, value) for name, value in zip(names, row, strict=True)})
        except csv.Error as exc:
            yield RawRecord(reader.line_num, None, f"unreadable CSV ({exc}).")


def _undecodable_row(row: list[str], line: int) -> RawRecord:
    """The row's cells joined as the file had them (near enough: quotes are gone) to find the first bad byte's line."""
    return _undecodable(",".join(row), _ESCAPED_BYTE.search(",".join(row)).start(), line)  # type: ignore[union-attr]


def _cell(name: str, value: str) -> Any:
    """Decode nested JSON cells and labels so a CSV export of a chat, DPO or KTO dataset imports back as it was."""
    value = unescape_cell(value)
    stripped = value.strip()
    if name == "label" and stripped.lower() in _BOOLEANS:
        return _BOOLEANS[stripped.lower()]
    if (name in JSON_CELLS or name in MESSAGE_CELLS) and stripped[:1] in ("[", "{"):
        try:
            decoded = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return value
        return decoded if name in JSON_CELLS or _is_messages(decoded) else value
    return value


def _is_messages(value: Any) -> bool:
    """A message or a list of messages; anything else in a text cell (an answer that is JSON) stays text."""
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(item, dict) and ("role" in item or "from" in item) for item in items)
