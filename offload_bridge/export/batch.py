"""The records of one topic taken by one ``consume()`` call -> the rows they make, as one Arrow table.

The export reads every record of the fact topics from the oldest, so this is where its time goes. It works a
batch at a time rather than a record at a time (``bench/export.py`` measures it against a raw consumer):

- ``case-events``, the bulk: the bodies, joined by newlines, are parsed by Arrow's JSON reader in one call
  (C++, several threads) into just the fields a row needs, the rest of each body skipped; the ``body`` column
  is the records' values as one binary array, checked as UTF-8 by Arrow's cast to string; the ingress'
  headers are taken with one pass in Python. No per-record Python object outlives the batch.
- a batch the columnar reading refuses (a body of another shape, a field of another type, a required field
  missing or empty, a body that is not one JSON object) is cut in two and each half tried again,
  down to ``COLUMNAR_MIN`` records, which go one by one through ``export.rows``: the reference for what
  makes a row, which names the reason of a skip. So a bad record costs a few more parses of its batch, and
  is skipped and counted exactly as the record-by-record reading decides.
- outcome topics (a few records per case) and batches smaller than ``COLUMNAR_MIN`` (a quiet topic under
  ``--follow``: one Arrow JSON call costs about as much as 30 to 60 records read one by one) go one by one.

The table's rows follow the records' order; records that make no row (a skip, a ``retrying`` outcome) leave
no gap. Deduplication on ``event_id`` is the partition buffer's (``export.buffer``), which knows what was
written before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from offload_bridge.analytics.arrow import TIMESTAMP, table_schema
from offload_bridge.analytics.tables import EVENTS, TableSpec
from offload_bridge.export.rows import MS_DIGITS, Headers, HeaderValue, Row, Skip, reader_for
from offload_bridge.schemas.headers import RECEIVED_AT_HEADER, SOURCE_HEADER

# Below this many records a batch is read one by one: Arrow's JSON reader costs ~0.2 ms a call.
COLUMNAR_MIN = 64
# Arrow's JSON reader parses blocks of this size on its threads: a consume() batch of 5,000 events is a few
# MB, cut in about ten blocks (64 KB cost more per block, 1 MB or more left one thread doing most of it).
# The threads made the export ~5% faster than one thread on the 2 shared cores it was measured on.
_JSON_BLOCK = 256 * 1024


@dataclass
class Records:
    """Records of one topic, in the order read (each partition's in offset order), as parallel lists."""

    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    headers: list[Headers] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)  # the records' Kafka timestamps, unix ms

    def __len__(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True)
class Skipped:
    partition: int
    offset: int
    skip: Skip


@dataclass
class Rows:
    """The rows of a batch in the table's schema, in record order, and the records skipped."""

    table: pa.Table
    skipped: list[Skipped]


def read_records(spec: TableSpec, records: Records) -> Rows:
    """The rows ``records`` of ``spec``'s topic make."""
    if spec.name != EVENTS.name:
        return _one_by_one(spec, records, 0, len(records))
    tables: list[pa.Table] = []
    skipped: list[Skipped] = []
    _read_events(records, 0, len(records), tables, skipped)
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    return Rows(table, skipped)


def _read_events(records: Records, lo: int, hi: int, tables: list[pa.Table], skipped: list[Skipped]) -> None:
    """Append the rows of ``records[lo:hi]`` to ``tables``: columnar, or halved until it is accepted."""
    if hi - lo >= COLUMNAR_MIN:
        table = _events_columnar(records, lo, hi)
        if table is not None:
            tables.append(table)
            return
        middle = (lo + hi) // 2
        _read_events(records, lo, middle, tables, skipped)
        _read_events(records, middle, hi, tables, skipped)
        return
    rows = _one_by_one(EVENTS, records, lo, hi)
    tables.append(rows.table)
    skipped.extend(rows.skipped)


# --- record by record ----------------------------------------------------------------------------------


def _one_by_one(spec: TableSpec, records: Records, lo: int, hi: int) -> Rows:
    """``records[lo:hi]`` through the record-by-record reader of ``export.rows``."""
    read = reader_for(spec)
    rows: list[Row] = []
    skipped: list[Skipped] = []
    for i in range(lo, hi):
        partition, offset = records.partitions[i], records.offsets[i]
        row = read(records.values[i], records.headers[i], partition, offset, records.timestamps[i])
        if isinstance(row, Skip):
            skipped.append(Skipped(partition, offset, row))
        elif row is not None:
            rows.append(row)
    try:
        return Rows(arrow_table(spec, [row.values for row in rows]), skipped)
    except (pa.ArrowException, ValueError):  # UnicodeEncodeError is a ValueError too
        pass
    # A value Arrow cannot hold (a lone surrogate from a "\ud800" escape, an integer beyond 64 bits) would
    # fail the whole batch at every restart: the rows are tried one at a time and the culprits skipped.
    kept: list[tuple[Any, ...]] = []
    for row in rows:
        try:
            arrow_table(spec, [row.values])
        except (pa.ArrowException, ValueError) as error:
            partition, offset = row.values[-2:]  # every fact table ends with kafka_partition, kafka_offset
            skipped.append(Skipped(partition, offset, Skip("bad_field", str(error))))
        else:
            kept.append(row.values)
    return Rows(arrow_table(spec, kept), sorted(skipped, key=lambda skipped: skipped.offset))


def arrow_table(spec: TableSpec, rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    """Rows (tuples in the row model's column order, times in unix ms) as an Arrow table."""
    schema = table_schema(spec)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [pa.array(column, type=field.type) for column, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


# --- events, columnar -------------------------------------------------------------------------------------

_TEXT, _INT = pa.string(), pa.int64()
# The fields of a webhook body a row needs, by their names in the body; everything else is skipped.
_DATA_FIELDS: dict[str, pa.DataType] = {
    "caseId": _TEXT, "status": _TEXT, "resultStatus": _TEXT, "inputRequestId": _TEXT,
    "inputRequest": _TEXT, "attemptCount": _INT, "clientReferenceId": _TEXT, "channel": _TEXT,
    "failureReason": _TEXT,
}  # fmt: skip
_BODY = pa.schema([
    ("event_id", _TEXT), ("event_type", _TEXT), ("timestamp", _INT),
    ("data", pa.struct(list(_DATA_FIELDS.items()))),  # type: ignore[arg-type]  # (name, type) pairs do
])  # fmt: skip
# Arrow refuses a field of another type than declared (a number for a string, a float or a string for an
# int), a key given twice and any malformed JSON, where the record-by-record reader would read an optional
# field as null or name the skip: a refusal sends the records there.
_PARSE = pa_json.ParseOptions(explicit_schema=_BODY, unexpected_field_behavior="ignore")
# Bodies with newlines of their own (pretty-printed JSON): Arrow then cuts its blocks where an object ends
# rather than at any newline, which costs more.
_PARSE_MULTILINE = pa_json.ParseOptions(
    explicit_schema=_BODY, unexpected_field_behavior="ignore", newlines_in_values=True
)
_READ = pa_json.ReadOptions(block_size=_JSON_BLOCK, use_threads=True)
_JSON_SPACE = b" \t\n\r"  # what JSON allows around a value (json.loads too; bytes.strip() takes more)


def _json_lines(values: list[bytes | None], bodies: pa.StringArray) -> bytes | None:
    """The bodies, one after the other with a newline between, for Arrow's JSON reader; None when a body
    is not a JSON object between braces (with only JSON whitespace around).

    Arrow's reader makes one row per JSON object it finds in the text, whatever the lines: a blank body
    would make none, and a body ``{..}{..}`` two, or one object could run over two bodies. With each body
    starting with "{" and ending with "}", an object cannot run past the end of its body (the next one
    starts with "{", which cannot follow a closed value inside an object, and a string cannot hold the raw
    newline between them), so each body makes at least one row, and as many rows as bodies means exactly
    one row per body.
    """
    if bodies.null_count:
        return None
    if pc.all(pc.starts_with(bodies, "{")).as_py() and pc.all(pc.ends_with(bodies, "}")).as_py():
        return b"\n".join(cast(list[bytes], values))
    stripped = [value.strip(_JSON_SPACE) for value in cast(list[bytes], values)]
    if all(value[:1] == b"{" and value[-1:] == b"}" for value in stripped):
        return b"\n".join(stripped)
    return None


def _events_columnar(records: Records, lo: int, hi: int) -> pa.Table | None:
    """The ``events`` rows of ``records[lo:hi]``, or None when any record needs reading on its own."""
    count = hi - lo
    values = records.values[lo:hi]
    try:
        # The body column; the cast checks UTF-8.
        bodies = cast(pa.StringArray, pa.array(values, pa.binary()).cast(_TEXT))
        text = _json_lines(values, bodies)
        if text is None:
            return None
        options = _PARSE if text.count(b"\n") == count - 1 else _PARSE_MULTILINE
        lines = pa.BufferReader(text)
        parsed = pa_json.read_json(lines, read_options=_READ, parse_options=options)  # type: ignore[arg-type]
        if parsed.num_rows != count:
            return None
        [body] = parsed.combine_chunks().to_batches()
        body.validate(full=True)  # a "\ud800" escape parses to bytes that are no UTF-8
    except (pa.ArrowException, ValueError):
        return None
    event_id, event_type, timestamp, data = body.columns
    assert isinstance(data, pa.StructArray)
    fields = dict(zip(_DATA_FIELDS, data.flatten(), strict=True))
    case_id, status = fields["caseId"], fields["status"]
    # What rows.read_event requires; a record without it goes there, to be skipped with its reason.
    for required in cast(list[pa.StringArray], [event_id, event_type, case_id, status]):
        if required.null_count or pc.min(pc.binary_length(required)).as_py() == 0:
            return None
    if data.null_count or timestamp.null_count or pc.min(timestamp).as_py() < 0:
        return None
    received_at, source = _event_headers(records, lo, hi)
    if received_at is None or source is None:
        return None
    columns: list[pa.Array[Any]] = [
        event_id, case_id, event_type, status, fields["resultStatus"], timestamp.cast(TIMESTAMP),
        received_at, source, fields["inputRequestId"], fields["inputRequest"], fields["attemptCount"],
        fields["clientReferenceId"], fields["channel"], fields["failureReason"], bodies,
        pa.array(records.partitions[lo:hi], _INT), pa.array(records.offsets[lo:hi], _INT),
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, schema=table_schema(EVENTS))


def _event_headers(records: Records, lo: int, hi: int) -> tuple[pa.Array[Any] | None, pa.Array[Any] | None]:
    """The ``received_at`` and ``source`` columns from the ingress' headers, as ``rows.read_event`` reads
    them: the last header of a name counts; a ``received_at`` absent, or not a number of ASCII digits,
    gives the record's Kafka timestamp. (None, None) when a header is not UTF-8: the record-by-record
    reader decides."""
    received: list[HeaderValue] = []
    sources: list[HeaderValue] = []
    for headers in records.headers[lo:hi]:
        received_at = source = None
        if headers:
            for name, value in headers.items() if isinstance(headers, dict) else headers:
                if name == RECEIVED_AT_HEADER:
                    received_at = value
                elif name == SOURCE_HEADER:
                    source = value
        received.append(received_at)
        sources.append(source)
    try:
        text = cast(pa.StringArray, pa.array(received, pa.binary()).cast(_TEXT))
        is_time = pc.and_(
            pc.ascii_is_decimal(text), pc.less_equal(pc.binary_length(text), pa.scalar(MS_DIGITS))
        )
        times = pc.if_else(is_time, text, None).cast(_INT)
        kafka_times = pa.array(records.timestamps[lo:hi], _INT)
        return pc.coalesce(times, kafka_times).cast(TIMESTAMP), pa.array(sources, pa.binary()).cast(_TEXT)
    except (pa.ArrowException, ValueError):
        return None, None
