"""Fold one webhook event into the state of its case.

Pure: the same record, event and headers always give the same result, so replaying ``case-events`` (or
the changelog) rebuilds the same table. Timestamps come from the event and its ``received_at`` header,
never from the clock.

Rules:
- an ``event_id`` among the case's last ``RECENT_EVENT_IDS`` ids is a duplicate: nothing changes;
- an event older than ``lastEventAt`` is stale: counted, never overwrites a field (it may fill a
  field still unknown, such as ``clientReferenceId``); at an equal timestamp a terminal status wins;
- ``case.input_needed`` sets the pending question; ``case.completed`` / ``case.failed`` set the result
  and clear it;
- any other ``case.*`` type moves only the status, and only when the status is a known one; like a stale
  event it may fill a field still unknown (a case first known through the reconciler's synthetic
  ``case.running`` of a tracked case has nothing else to learn its channel from).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from offload_bridge.schemas.case_state import RECENT_EVENT_IDS, CaseRecord, CaseState, InputRequest
from offload_bridge.schemas.events import (
    KNOWN_STATUSES,
    TERMINAL_STATUSES,
    CaseEvent,
    CompletedEvent,
    FailedEvent,
    InputNeededEvent,
)
from offload_bridge.schemas.headers import RECEIVED_AT_HEADER

# Fields every event type may carry; copied only when the event sent them, so an event that omits
# clientReferenceId or metadata does not erase what an earlier one told us.
_COMMON_FIELDS = ("channel", "attemptCount", "attachments", "clientReferenceId", "metadata")
# What an event that may not set fields (stale, or of a type that moves only the status) fills when unknown.
_FILLED_WHEN_UNKNOWN = ("clientReferenceId", "channel", "metadata")


class FoldResult(StrEnum):
    APPLIED = "applied"  # the event's fields are now the case's current fields
    STALE = "stale"  # older than lastEventAt: counted, current fields kept
    IGNORED = "ignored"  # an unknown event type whose status we cannot use: counted only
    DUPLICATE = "duplicate"  # event_id already folded: the record is returned unchanged


def received_at(headers: Mapping[str, bytes], event: CaseEvent) -> int:
    """The ingress's ``received_at`` header (unix ms); the event's own timestamp when absent or bad."""
    raw = headers.get(RECEIVED_AT_HEADER)
    if raw is not None:
        try:
            return int(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    return event.timestamp


def fold(
    record: CaseRecord | None, event: CaseEvent, headers: Mapping[str, bytes]
) -> tuple[CaseRecord, FoldResult]:
    """The case's record after ``event``, and what the event did to it."""
    if record is not None and event.event_id in record.recentEventIds:
        return record, FoldResult.DUPLICATE
    at = received_at(headers, event)
    if record is not None:
        state = record.state
    else:
        state = CaseState(caseId=event.data.caseId, firstSeenAt=at, updatedAt=at)
    changes: dict[str, Any] = {"eventCount": state.eventCount + 1}
    if _is_stale(state, event):
        outcome = FoldResult.STALE
        changes["staleEventCount"] = state.staleEventCount + 1
        changes.update(_unknown_fields(state, event))
    else:
        applied = _apply(state, event)
        outcome = FoldResult.APPLIED if applied else FoldResult.IGNORED
        if applied:
            changes.update(applied)
            changes.update(lastEventId=event.event_id, lastEventType=event.event_type)
            changes.update(lastEventAt=event.timestamp, updatedAt=at)
    recent = [*(record.recentEventIds if record is not None else ()), event.event_id][-RECENT_EVENT_IDS:]
    return CaseRecord(state=state.model_copy(update=changes), recentEventIds=recent), outcome


def _unknown_fields(state: CaseState, event: CaseEvent) -> dict[str, Any]:
    """The fields the event sent that the state does not know yet."""
    sent = event.data.model_fields_set
    return {
        name: getattr(event.data, name)
        for name in _FILLED_WHEN_UNKNOWN
        if getattr(state, name) is None and name in sent
    }


def _is_stale(state: CaseState, event: CaseEvent) -> bool:
    if state.lastEventAt is None:
        return False
    if event.timestamp != state.lastEventAt:
        return event.timestamp < state.lastEventAt
    # Same millisecond: never let a non-terminal status replace a terminal one.
    return state.status in TERMINAL_STATUSES and event.data.status not in TERMINAL_STATUSES


def _apply(state: CaseState, event: CaseEvent) -> dict[str, Any]:
    """The fields a newer event sets; empty when it sets none."""
    data = event.data
    if not isinstance(event, InputNeededEvent | CompletedEvent | FailedEvent):
        if data.status not in KNOWN_STATUSES:
            return {}
        moved: dict[str, Any] = {**_unknown_fields(state, event), "status": data.status}
        if data.status in TERMINAL_STATUSES:
            moved["inputRequest"] = None
        return moved
    changes: dict[str, Any] = {"status": data.status}
    sent = data.model_fields_set
    for name in _COMMON_FIELDS:
        value = getattr(data, name)
        if name in sent and (value is not None or name in ("clientReferenceId", "metadata")):
            changes[name] = value
    if isinstance(event, InputNeededEvent):
        needed = event.data
        changes["inputRequest"] = InputRequest(
            id=needed.inputRequestId,
            question=needed.inputRequest,
            status=needed.inputRequestStatus,
            requestedAt=needed.inputRequestedAt if needed.inputRequestedAt is not None else event.timestamp,
        )
        return changes
    changes["inputRequest"] = None
    changes["resultStatus"] = event.data.resultStatus
    if "result" in event.data.model_fields_set:
        changes["result"] = event.data.result
    if isinstance(event, FailedEvent):
        changes["failureReason"] = event.data.failureReason
    return changes
