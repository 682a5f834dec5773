"""One Kafka record -> one row of a fact table, or no row, or a reason to skip it.

Each reader turns a record of its topic into a tuple of the table's columns, in the order of its row model
(``offload_bridge.schemas.analytics``), with times as unix milliseconds (arrow takes them as
``timestamp[ms, UTC]`` without a detour through ``datetime``): ``json.loads`` and a check per field. This is
the reference for what makes a row and what names the reason of a skip. The bulk of ``case-events`` is read
a batch at a time, in columns (``export.batch``), which sends here every record it cannot read the same
way; outcomes, a few per case, and the small batches of a quiet topic always come here.

What makes a row, and what does not:

- ``case-events``: every record whose body is a JSON object with the envelope (``event_id``,
  ``event_type``, ``timestamp``) and ``data.caseId`` and ``data.status``; the other columns are taken when
  present with the expected type, else null (the ``body`` column keeps the record as it was). The headers
  give ``received_at`` (else the record's Kafka timestamp) and ``source``. Rows are deduplicated on
  ``event_id`` by the caller, which knows what was written before.
- ``answer-outcomes``: terminal outcomes only; ``retrying`` is a step on the way and makes no row.
- ``case-request-outcomes``: terminal outcomes only, likewise.

A record that fails these checks is no reason to stop: the reader returns a ``Skip`` naming why, and the
exporter counts it (``offload_export_skipped_total{table,reason}``), logs one line and goes on. The ingress
already quarantines webhooks that fail the schema (``case-events.invalid``), so a skip here means a record
some other producer wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from offload_bridge.analytics.tables import ANSWERS, CASE_REQUESTS, EVENTS, TableSpec
from offload_bridge.schemas.headers import RECEIVED_AT_HEADER, SOURCE_HEADER

SkipReason = Literal["not_json", "not_an_object", "missing_field", "bad_field"]
HeaderValue = str | bytes | None
Headers = Sequence[tuple[str, HeaderValue]] | dict[str, HeaderValue] | None
RETRYING = "retrying"  # the one outcome, of answers and case requests alike, that is not terminal


@dataclass(frozen=True)
class Skip:
    """A record that makes no row because it cannot be read; ``detail`` says what was wrong."""

    reason: SkipReason
    detail: str


class Row(NamedTuple):
    """A row's column values (the row model's order), the ``date=`` partition it goes to, and for events
    the id it is deduplicated on."""

    values: tuple[Any, ...]
    date: str
    event_id: str | None = None


class _Invalid(Exception):
    def __init__(self, reason: SkipReason, detail: str) -> None:
        self.skip = Skip(reason, detail)


# --- field access: required fields raise, optional ones are null when absent or of another type -----------


def _required_text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        raise _Invalid("missing_field", name)
    if not isinstance(value, str) or not value:
        raise _Invalid("bad_field", f"{name} must be a non-empty string")
    return value


def _required_ms(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if value is None:
        raise _Invalid("missing_field", name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Invalid("bad_field", f"{name} must be unix milliseconds")
    return value


def _text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) else None


def _int(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _object(value: bytes | None) -> dict[str, Any]:
    if not value:
        raise _Invalid("not_json", "empty value")
    try:
        # JSON on Kafka is UTF-8 (RFC 8259). json.loads would also take UTF-16 or UTF-32 bytes, which the
        # body column, UTF-8 text, cannot hold.
        payload = json.loads(value.decode("utf-8"))
    except ValueError as error:  # UnicodeDecodeError is a ValueError too
        raise _Invalid("not_json", str(error)) from None
    if not isinstance(payload, dict):
        raise _Invalid("not_an_object", f"a JSON {type(payload).__name__}")
    return payload


_DAY_MS = 86_400_000
_dates: dict[int, str] = {}


def utc_date(ms: int) -> str:
    """YYYY-MM-DD of a unix millisecond time in UTC (cached by day: rows of a run share few days)."""
    day = ms // _DAY_MS
    date = _dates.get(day)
    if date is None:
        date = _dates[day] = datetime.fromtimestamp(day * 86_400, UTC).date().isoformat()
    return date


# --- the readers -----------------------------------------------------------------------------------------

Reader = Callable[[bytes | None, Headers, int, int, int], "Row | Skip | None"]


MS_DIGITS = 18  # a unix time in ms has 13 digits; 64 bits hold any number of 18


def _event_headers(headers: Headers, timestamp_ms: int) -> tuple[int, str | None]:
    """(received_at, source) from the ingress' headers; without ``received_at`` (or one that is not a
    number of ASCII digits) the record's Kafka timestamp stands in."""
    if not headers:
        return timestamp_ms, None
    named = headers if isinstance(headers, dict) else dict(headers)
    received, source = named.get(RECEIVED_AT_HEADER), named.get(SOURCE_HEADER)
    if isinstance(received, str):
        received = received.encode()
    is_time = received is not None and received.isdigit() and len(received) <= MS_DIGITS
    received_at = int(received) if received is not None and is_time else timestamp_ms
    if isinstance(source, bytes):
        source = source.decode("utf-8", "replace")
    return received_at, source


def read_event(
    value: bytes | None, headers: Headers, partition: int, offset: int, timestamp_ms: int
) -> Row | Skip:
    """A ``case-events`` record (the webhook body as received) as an ``events`` row: the envelope's
    ``event_id``, ``event_type`` and ``timestamp`` and ``data.caseId`` and ``data.status`` are required;
    optional fields of another type than expected read as null."""
    try:
        envelope = _object(value)
        event_id = _required_text(envelope, "event_id")
        event_type = _required_text(envelope, "event_type")
        event_time = _required_ms(envelope, "timestamp")
        data = envelope.get("data")
        if data is None:
            raise _Invalid("missing_field", "data")
        if not isinstance(data, dict):
            raise _Invalid("bad_field", "data must be an object")
        case_id = _required_text(data, "caseId")
        status = _required_text(data, "status")
    except _Invalid as invalid:
        return invalid.skip
    received_at, source = _event_headers(headers, timestamp_ms)
    assert value is not None  # _object refused an empty value
    values = (
        event_id,
        case_id,
        event_type,
        status,
        _text(data, "resultStatus"),
        event_time,
        received_at,
        source,
        _text(data, "inputRequestId"),
        _text(data, "inputRequest"),
        _int(data, "attemptCount"),
        _text(data, "clientReferenceId"),
        _text(data, "channel"),
        _text(data, "failureReason"),
        value.decode("utf-8"),
        partition,
        offset,
    )
    return Row(values, utc_date(event_time), event_id)


def read_answer_outcome(
    value: bytes | None, headers: Headers, partition: int, offset: int, timestamp_ms: int
) -> Row | Skip | None:
    """An ``answer-outcomes`` record as an ``answers`` row; None for ``retrying``."""
    try:
        outcome = _object(value)
        kind = _required_text(outcome, "outcome")
        if kind == RETRYING:
            return None
        answer_id = _required_text(outcome, "answerId")
        case_id = outcome.get("caseId")  # "" when the answer named no case it could be reported to
        if not isinstance(case_id, str):
            raise _Invalid("missing_field" if case_id is None else "bad_field", "caseId")
        at = _required_ms(outcome, "at")
    except _Invalid as invalid:
        return invalid.skip
    values = (
        answer_id,
        case_id,
        _text(outcome, "inputRequestId"),
        kind,
        _int(outcome, "httpStatus"),
        _text(outcome, "errorCode"),
        _int(outcome, "attempt") or 0,
        _text(outcome, "submittedBy"),
        at,
        partition,
        offset,
    )
    return Row(values, utc_date(at))


def read_case_request_outcome(
    value: bytes | None, headers: Headers, partition: int, offset: int, timestamp_ms: int
) -> Row | Skip | None:
    """A ``case-request-outcomes`` record as a ``case_requests`` row; None for ``retrying``."""
    try:
        outcome = _object(value)
        kind = _required_text(outcome, "outcome")
        if kind == RETRYING:
            return None
        request_id = _required_text(outcome, "requestId")
        at = _required_ms(outcome, "at")
    except _Invalid as invalid:
        return invalid.skip
    values = (
        request_id,
        _text(outcome, "caseId"),
        kind,
        _int(outcome, "httpStatus"),
        _text(outcome, "errorCode"),
        at,
        partition,
        offset,
    )
    return Row(values, utc_date(at))


READERS: dict[str, Reader] = {
    EVENTS.name: read_event,
    ANSWERS.name: read_answer_outcome,
    CASE_REQUESTS.name: read_case_request_outcome,
}


def reader_for(table: TableSpec) -> Reader:
    return READERS[table.name]
