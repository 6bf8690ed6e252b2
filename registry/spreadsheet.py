"""CSV that is safe to open in a spreadsheet and reads back as it was written.

OWASP's rule for CSV injection: a text cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is
prefixed with `'` so a spreadsheet shows it as text instead of running it as a formula. A cell that already starts
with `'` gets one too, which makes the rule reversible: `unescape_cell` removes exactly one. Every cell is quoted,
so a bare carriage return or any other control character stays inside its cell.
"""

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_cell(value: Any) -> Any:
    """The value as it goes into a CSV cell: text that a spreadsheet would evaluate is made inert."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def unescape_cell(value: str) -> str:
    """Undo `escape_cell` (a spreadsheet's leading apostrophe means "text", so it is not part of the value)."""
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def write_csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> bytes:
    """UTF-8 CSV of `rows`, every cell quoted and escaped (header included)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow([escape_cell(column) for column in columns])
    for row in rows:
        writer.writerow([escape_cell(row.get(column)) for column in columns])
    return buffer.getvalue().encode("utf-8")
