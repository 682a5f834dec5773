"""Is Offload ahead of our state of a case, and which event brings us level? Pure functions, no I/O.

Offload is ahead when its ``updatedAt`` is newer than the newest event we folded (``lastEventAt``), or
when we know nothing of the case. The event that brings us level describes Offload's current state as
the webhook of that update would have, with Offload's own id scheme
``evt_<caseId>_<event_type with . -> _>_<updatedAt>`` and ``timestamp = updatedAt``: a real webhook for
the same update that arrives later folds as a duplicate, and any newer one still wins.

- INPUT_NEEDED with an input request -> ``case.input_needed`` (question, id, status, requestedAt);
- COMPLETED -> ``case.completed`` (resultStatus, result); FAILED -> ``case.failed`` (resultStatus);
- any other status -> a synthetic ``case.<status in lower case>`` (``case.running`` after an answer,
  ``case.created``), which the fold uses for the status only.

A different status at an ``updatedAt`` that is not newer cannot be expressed as an event the fold would
apply (it would be stale, or a duplicate id); it is reported as ``diverged`` and left alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from offload_bridge.schemas.case_state import CaseState
from offload_bridge.schemas.events import (
    COMPLETED,
    EVENT_TYPE_PATTERN,
    FAILED,
    INPUT_NEEDED,
    parse_event_object,
)
from offload_bridge.schemas.headers import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    RECEIVED_AT_HEADER,
    SOURCE_HEADER,
)
from offload_bridge.schemas.offload_case import OffloadCase

SOURCE_RECONCILER = "reconciler"
SOURCE_BRIDGE = "bridge"

_STATUS_EVENTS = {"COMPLETED": COMPLETED, "FAILED": FAILED}


class ReconcileDecision(StrEnum):
    """How our state of a case compares with Offload's, and so whether an event is published."""

    AHEAD = "ahead"  # Offload has news: publish the event
    LEVEL = "level"  # nothing to do
    BEHIND = "behind"  # our state is newer than Offload's answer (a webhook overtook the GET)
    DIVERGED = "diverged"  # same or older updatedAt, other status or question: reported, not published
    INCOMPLETE = "incomplete"  # Offload is ahead but gave too little to build an event (logged)


@dataclass(frozen=True)
class SynthesizedEvent:
    """A webhook-shaped event for ``case-events``: its body and the headers the ingress would set."""

    case_id: str
    event_id: str
    event_type: str
    body: bytes

    def headers(self, received_at: int, source: str) -> list[tuple[str, bytes]]:
        return [
            (EVENT_TYPE_HEADER, self.event_type.encode()),
            (EVENT_ID_HEADER, self.event_id.encode()),
            (RECEIVED_AT_HEADER, str(received_at).encode()),
            (SOURCE_HEADER, source.encode()),
        ]


@dataclass(frozen=True)
class Comparison:
    """The decision about one case, the event that brings us level when Offload is ahead, and why."""

    decision: ReconcileDecision
    reason: str
    event: SynthesizedEvent | None = None
    our_status: str | None = None
    offload_status: str | None = None

    def describe(self, case_id: str) -> str:
        """One line for people: what changed, or why nothing did."""
        moved = f"{self.our_status or '(unknown)'} -> {self.offload_status}"
        if self.event is not None:
            return f"{case_id}: {moved}: published {self.event.event_type} {self.event.event_id}"
        return f"{case_id}: {self.decision.value}: {self.reason}"


def offload_event_id(case_id: str, event_type: str, updated_at: int) -> str:
    return f"evt_{case_id}_{event_type.replace('.', '_')}_{updated_at}"


def event_type_for(status: str) -> str | None:
    """The event type that reports a case in ``status``; None when no valid type can be made."""
    if status == "INPUT_NEEDED":
        return INPUT_NEEDED
    known = _STATUS_EVENTS.get(status)
    if known is not None:
        return known
    candidate = f"case.{status.lower()}"
    return candidate if re.match(EVENT_TYPE_PATTERN, candidate) else None


def decide_reconcile(state: CaseState | None, offload: OffloadCase) -> Comparison:
    ours = state.status if state is not None else None
    last = state.lastEventAt if state is not None else None

    def result(decision: ReconcileDecision, reason: str, event: SynthesizedEvent | None = None) -> Comparison:
        return Comparison(decision, reason, event, ours, offload.status)

    if last is not None and offload.updatedAt < last:
        return result(ReconcileDecision.BEHIND, f"our last event {last} is newer than {offload.updatedAt}")
    if last is not None and offload.updatedAt == last:
        if ours != offload.status or _question_id(state) != _offload_question_id(offload):
            return result(ReconcileDecision.DIVERGED, f"other status or question at {last}")
        return result(ReconcileDecision.LEVEL, "up to date")
    event = synthesize(offload)
    if event is None:
        reason = f"status {offload.status} without what its event needs"
        return result(ReconcileDecision.INCOMPLETE, reason)
    return result(ReconcileDecision.AHEAD, f"updatedAt {offload.updatedAt} is newer than {last}", event)


def synthesize(offload: OffloadCase) -> SynthesizedEvent | None:
    """The event of Offload's current update, or None when it cannot be built from what GET gave."""
    event_type = event_type_for(offload.status)
    if event_type is None:
        return None
    data: dict[str, Any] = {"caseId": offload.caseId}
    if offload.clientReferenceId is not None:
        data["clientReferenceId"] = offload.clientReferenceId
    data["status"] = offload.status
    if offload.channel is not None:
        data["channel"] = offload.channel
    if offload.attemptCount is not None:
        data["attemptCount"] = offload.attemptCount
    data["attachments"] = [attachment.model_dump(mode="json") for attachment in offload.attachments]
    if event_type == INPUT_NEEDED:
        question = offload.inputRequest
        if question is None:
            return None
        data.update(
            inputRequest=question.question,
            inputRequestId=question.id,
            inputRequestStatus=question.status,
            inputRequestedAt=question.requestedAt,
        )
    elif event_type in (COMPLETED, FAILED):
        data["resultStatus"] = offload.resultStatus
        if event_type == COMPLETED or offload.result is not None:
            data["result"] = offload.result
    return build_event(offload.caseId, event_type, offload.updatedAt, data)


def build_event(case_id: str, event_type: str, timestamp: int, data: dict[str, Any]) -> SynthesizedEvent:
    """A validated event in the webhook envelope. Raises pydantic.ValidationError."""
    event_id = offload_event_id(case_id, event_type, timestamp)
    payload = {"event_id": event_id, "event_type": event_type, "timestamp": timestamp, "data": data}
    parse_event_object(payload)  # the state agent must be able to fold what we publish
    body = json.dumps(payload, separators=(",", ":")).encode()
    return SynthesizedEvent(case_id, event_id, event_type, body)


def _question_id(state: CaseState | None) -> str | None:
    # The fold keeps an answered question through a synthetic status move: only INPUT_NEEDED has one open.
    if state is None or state.status != "INPUT_NEEDED" or state.inputRequest is None:
        return None
    return state.inputRequest.id


def _offload_question_id(offload: OffloadCase) -> str | None:
    if offload.status != "INPUT_NEEDED" or offload.inputRequest is None:
        return None
    return offload.inputRequest.id
