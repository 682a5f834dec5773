"""Query results for people and programs: an aligned text table, CSV or JSON. No pyarrow, no DuckDB.

Times print as ISO 8601 in UTC with milliseconds (``2026-12-07T10:15:00.123Z``) in every format, so a
CSV or JSON result reads back the same in any tool; null is an empty cell in text and CSV.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

Format = Literal["text", "csv", "json"]
FORMATS: tuple[Format, ...] = ("text", "csv", "json")
COLUMN_GAP = "  "


def scalar(value: Any) -> Any:
    """A value as JSON holds it: times as ISO text, decimals as numbers, the rest as is (or as text)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:  # DuckDB's TIMESTAMP (no zone) is UTC in our tables
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _cell(value: Any) -> str:
    shown = scalar(value)
    if shown is None:
        return ""
    if isinstance(shown, bool):
        return "true" if shown else "false"
    return str(shown)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def text_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns aligned under their names (numbers to the right), a rule under the header, a row count."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(name) for name in columns]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    numeric = [
        any(_is_number(row[index]) for row in rows)
        and all(row[index] is None or _is_number(row[index]) for row in rows)
        for index in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return COLUMN_GAP.join(parts).rstrip()

    lines = [line(columns), line(["-" * width for width in widths])]
    lines.extend(line(row) for row in cells)
    lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines)


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    sink = io.StringIO()
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([_cell(value) for value in row] for row in rows)
    return sink.getvalue().rstrip("\n")


def json_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A JSON array with one object per row, keys in column order."""
    objects = [{name: scalar(value) for name, value in zip(columns, row, strict=True)} for row in rows]
    return json.dumps(objects, indent=2, ensure_ascii=False)


def render(columns: Sequence[str], rows: Sequence[Sequence[Any]], output: Format) -> str:
    if output == "csv":
        return csv_text(columns, rows)
    if output == "json":
        return json_text(columns, rows)
    return text_table(columns, rows)
