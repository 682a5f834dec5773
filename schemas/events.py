"""Offload's webhook events: the envelope and the ``data`` of each documented event type.

Field names follow Offload's wire format (camelCase inside ``data``). Unknown extra fields are kept
(``extra="allow"``) so nothing Offload adds later is dropped. Only what is needed to key, order and
deduplicate an event is required; a documented field that is missing gets its neutral default, because
a webhook that fails the schema is quarantined rather than folded.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from offload_bridge.schemas.open_enum import OpenEnum

EVENT_TYPE_PATTERN = r"^case\.[A-Za-z0-9_.-]+$"

INPUT_NEEDED = "case.input_needed"
COMPLETED = "case.completed"
FAILED = "case.failed"

CaseStatus = Literal["CREATED", "RUNNING", "INPUT_NEEDED", "COMPLETED", "FAILED"]
CASE_STATUSES: tuple[str, ...] = get_args(CaseStatus)
KNOWN_STATUSES: frozenset[str] = frozenset(CASE_STATUSES)
INPUT_REQUEST_STATUSES: tuple[str, ...] = ("PENDING", "RESOLVED")
TERMINAL_STATUSES: frozenset[str] = frozenset({"COMPLETED", "FAILED"})


class _OpenModel(BaseModel):
    model_config = ConfigDict(extra="allow")


class Attachment(_OpenModel):
    """An attachment as webhooks carry it (no download URL)."""

    attachmentId: str
    name: str | None = None
    size: int | None = None
    type: str | None = None
    messageId: str | None = None
    inboxId: str | None = None
    receivedAt: int | str | None = None


class CaseEventData(_OpenModel):
    """Fields every case event carries."""

    caseId: str = Field(min_length=1)
    # An open string: an unknown status is kept as sent, and the fold decides what to do with it.
    status: Annotated[str, OpenEnum(CASE_STATUSES)] = Field(min_length=1)
    channel: str | None = None
    attemptCount: int | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    clientReferenceId: str | None = None
    metadata: Any = None


class InputNeededData(CaseEventData):
    inputRequest: str
    inputRequestId: str = Field(min_length=1)
    inputRequestStatus: str = "PENDING"
    inputRequestedAt: int | None = None


class CompletedData(CaseEventData):
    resultStatus: str | None = None
    result: Any = None


class FailedData(CaseEventData):
    resultStatus: str | None = None
    failureReason: str | None = None
    result: Any = None


class CaseEvent(_OpenModel):
    """The webhook envelope: ``{event_id, event_type, timestamp, data}``."""

    event_id: str = Field(min_length=1)
    event_type: str = Field(pattern=EVENT_TYPE_PATTERN)
    timestamp: int = Field(ge=0, description="unix ms of the case update")
    data: CaseEventData


class InputNeededEvent(CaseEvent):
    event_type: Literal["case.input_needed"]
    data: InputNeededData


class CompletedEvent(CaseEvent):
    event_type: Literal["case.completed"]
    data: CompletedData


class FailedEvent(CaseEvent):
    event_type: Literal["case.failed"]
    data: FailedData


EVENT_MODELS: dict[str, type[CaseEvent]] = {
    INPUT_NEEDED: InputNeededEvent,
    COMPLETED: CompletedEvent,
    FAILED: FailedEvent,
}


def _model_for(event_type: object) -> type[CaseEvent]:
    return EVENT_MODELS.get(event_type, CaseEvent) if isinstance(event_type, str) else CaseEvent


def parse_event_object(payload: dict[str, Any]) -> CaseEvent:
    """Validate a decoded webhook body; an unknown ``case.*`` type parses with the common fields.

    Raises pydantic.ValidationError.
    """
    return _model_for(payload.get("event_type")).model_validate(payload)


def parse_event(body: bytes | str) -> CaseEvent:
    """Decode and validate a webhook body. Raises ValueError (not a JSON object) or ValidationError."""
    payload = json.loads(body)
    if not isinstance(payload, dict):
        raise ValueError("a case event must be a JSON object")
    return parse_event_object(payload)
