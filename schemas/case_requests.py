"""Case creation by message: the body of Offload's ``POST /cases``, a ``requestId``, and the outcome.

``CreateCase`` validates what Offload documents for ``POST /cases``; fields it does not know are kept and
forwarded as sent, so Offload stays the judge of anything newer than these models.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, StringConstraints

from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.open_enum import OpenEnum

NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class Goal(_Body):
    objective: NonBlank
    knowledge: str | dict[str, Any]


class Counterparty(_Body):
    address: NonBlank
    name: NonBlank
    company: str | None = None
    timezone: str | None = None
    customData: dict[str, str] | None = None


class SenderPersona(_Body):
    name: NonBlank
    role: str | None = None
    company: str | None = None
    tone: str | None = None


class CreateCase(_Body):
    """The documented body of ``POST /cases``; Offload's defaults apply to what is left out."""

    channel: Literal["EMAIL", "SMS"]
    goal: Goal
    counterparty: Counterparty
    senderPersona: SenderPersona
    clientReferenceId: str | None = None
    constraints: list[str] | None = None
    maxAttempts: int | None = Field(default=None, ge=1, description="Offload's default: 3")
    followUpDelayHours: float | None = Field(default=None, gt=0, description="Offload's default: 72")
    resultSchema: dict[str, Any] | None = None
    clientWebhookUrl: AnyHttpUrl | None = None
    metadata: Any = None

    def offload_body(self) -> dict[str, Any]:
        """The JSON body to send: only what the requester set, nothing defaulted by us."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"requestId"})


class CaseRequest(CreateCase):
    """A message on ``case-requests`` (key = requestId)."""

    requestId: NonBlank


class RetryCaseRequest(CaseRequest):
    """A message on ``case-requests.retry`` (key = requestId): the request, the attempt about to be made, and
    when. Its header ``origin`` names the ``case-requests`` record it continues.

    Only requests that provably did not reach Offload are retried (see ``CaseRequestOutcomeKind``); the
    retry waits on its own topic so that later requests of the same partition do not wait behind it.
    """

    attempt: int = Field(ge=1)
    notBefore: int = Field(ge=0, description="unix ms before which the attempt must not be made")

    def offload_body(self) -> dict[str, Any]:
        """The body the requester sent: the retry's own fields are not Offload's."""
        return self.model_dump(mode="json", exclude_unset=True, exclude={"requestId", "attempt", "notBefore"})

    def request(self) -> CaseRequest:
        """The request as it was published, without the retry's own fields."""
        fields = self.model_dump(mode="json", exclude_unset=True, exclude={"attempt", "notBefore"})
        return CaseRequest.model_validate(fields)


class CaseRequestOutcomeKind(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    # The call may or may not have reached Offload before a crash: an operator decides (docs: "What to do
    # with `unknown`").
    UNKNOWN = "unknown"


class CaseRequestOutcome(BaseModel):
    """A message on ``case-request-outcomes``."""

    requestId: str
    outcome: Annotated[CaseRequestOutcomeKind, OpenEnum()]
    caseId: str | None = None
    httpStatus: int | None = None
    errorCode: str | None = None
    message: str = ""
    at: int = Field(default_factory=now_ms, description="unix ms")


class CaseRequestStatus(StrEnum):
    """Where a request stands in the case-requests table."""

    PENDING = "pending"  # a POST /cases call may be in flight: never re-sent blindly
    RETRYING = "retrying"  # the last call provably failed; the next one may be made
    CREATED = "created"
    REJECTED = "rejected"
    DEAD_LETTERED = "dead_lettered"
    UNKNOWN = "unknown"  # found pending after a crash: an operator decides


class CaseRequestRecord(BaseModel):
    """The case-requests table's value, keyed by requestId."""

    requestId: str
    status: CaseRequestStatus
    attempt: int = Field(default=0, ge=0, description="calls to POST /cases made or in flight")
    caseId: str | None = None
    httpStatus: int | None = None
    errorCode: str | None = None
    message: str = ""
    at: int = Field(default_factory=now_ms, description="unix ms of the last change")
    origin: str | None = Field(
        default=None, description="<topic>:<partition>:<offset> of the request record this state belongs to"
    )
