"""Turn a raw ``case-events`` record into an event, or say in one line why it is not one."""

from __future__ import annotations

from pydantic import ValidationError

from offload_bridge.schemas.events import CaseEvent, parse_event
from offload_bridge.schemas.validation import describe_validation_error


class InvalidRecord(ValueError):
    """A record of ``case-events`` that cannot be folded; the message says why in one line."""


def decode_event(key: bytes | None, value: bytes | None) -> CaseEvent:
    """The event a record carries. Raises InvalidRecord.

    The key must be the event's caseId: the table is partitioned by it, so an event filed under another
    key would land in a partition that does not own its case.
    """
    if value is None:
        raise InvalidRecord("record has no value")
    try:
        event = parse_event(value)
    except ValidationError as error:
        raise InvalidRecord("schema: " + describe_validation_error(error, first_only=True)) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRecord(f"not a JSON object: {error}") from None
    expected = event.data.caseId.encode()
    if key != expected:
        shown = key.decode(errors="replace") if key is not None else None
        raise InvalidRecord(f"record key {shown!r} is not the event's caseId {event.data.caseId!r}")
    return event
