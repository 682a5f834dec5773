"""The state of one case as the streams worker folds it from ``case-events``.

``CaseState`` is what ``GET /cases/{caseId}`` returns and what ``case-state`` carries (camelCase, like
Offload's own fields). ``CaseRecord`` is the table value: the state plus what the fold needs to stay
idempotent, which downstream readers never see.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from offload_bridge.schemas.answers import Outcome
from offload_bridge.schemas.events import CASE_STATUSES, INPUT_REQUEST_STATUSES, Attachment
from offload_bridge.schemas.open_enum import OpenEnum

# How many event ids per case the fold remembers for deduplication. Offload sends a handful of
# webhooks per case; a duplicate older than the last 64 distinct events of its case is no longer
# recognised by id, but it is older than lastEventAt then, so it is counted as stale and changes nothing.
RECENT_EVENT_IDS = 64


class InputRequest(BaseModel):
    """The question a case is waiting on (from ``case.input_needed``)."""

    id: str
    question: str
    status: Annotated[str, OpenEnum(INPUT_REQUEST_STATUSES)] = "PENDING"
    requestedAt: int | None = None


class AnswerRecord(BaseModel):
    """What became of our answer to one input request (written by the answer agent)."""

    answerId: str
    outcome: Annotated[str, OpenEnum(tuple(outcome.value for outcome in Outcome))]
    at: int


class CaseState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    caseId: str
    clientReferenceId: str | None = None
    status: Annotated[str, OpenEnum(CASE_STATUSES)] | None = None
    channel: str | None = None
    attemptCount: int | None = None
    resultStatus: str | None = None
    result: Any = None
    failureReason: str | None = None
    metadata: Any = None
    attachments: list[Attachment] = Field(default_factory=list)
    inputRequest: InputRequest | None = None
    lastEventId: str | None = None
    lastEventType: str | None = None
    lastEventAt: int | None = Field(
        default=None, description="timestamp (unix ms) of the newest event applied"
    )
    firstSeenAt: int = Field(description="received_at (unix ms) of the first event of this case")
    updatedAt: int = Field(description="received_at (unix ms) of the event last applied")
    eventCount: int = Field(default=0, description="distinct events folded, stale ones included")
    staleEventCount: int = Field(default=0, description="events older than lastEventAt: counted, not applied")
    answers: dict[str, AnswerRecord] = Field(default_factory=dict, description="keyed by inputRequestId")


class CheckSchedule(BaseModel):
    """When the reconciler next asks Offload about an open case, and what that time was decided from.

    Kept with the case in the table, so a restarted worker or the next owner of the partition goes on
    with the same schedule instead of checking every case at once.
    """

    dueAt: int = Field(description="unix ms at which the case is next checked")
    intervalMs: int = Field(description="the wait before dueAt when nothing hurried it; backs off from here")
    nextActionAt: int | None = Field(
        default=None, description="Offload's nextActionAt at the last check (None: none scheduled or unknown)"
    )
    checkedAt: int | None = Field(default=None, description="unix ms of the last check that got an answer")
    hinted: bool = Field(
        default=False,
        description="dueAt comes from a hint (an answer, a creation, Offload's nextActionAt), not the"
        " backoff: such checks go first when the budget is short",
    )
    covered: bool = Field(
        default=False,
        description="dueAt is only the safety check of a case whose next move a hint covers (it waits for"
        " our answer, or for Offload's nextActionAt): such checks go last when the budget is short",
    )


class CaseRecord(BaseModel):
    """The case-state table's value."""

    state: CaseState
    recentEventIds: list[str] = Field(default_factory=list, max_length=RECENT_EVENT_IDS)
    # None for a terminal case, and in records written before schedules existed (due by updatedAt then).
    check: CheckSchedule | None = None
