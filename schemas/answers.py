"""Answers to Offload's questions, their outcomes, retries and dead letters.

``Answer`` is what teams publish on ``answers``; the worker forwards it to ``POST /cases/{id}/input`` and
reports exactly one terminal ``AnswerOutcome`` on ``answer-outcomes`` (``retrying`` may come before it).
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from offload_bridge.schemas.events import CASE_STATUSES
from offload_bridge.schemas.open_enum import OpenEnum

# Offload trims inputRequestId and providedContext and refuses them empty; so do we, before sending.
NonBlank = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

# uuid5 namespace of default answer ids: the same case, question and text always give the same id.
# Never change it: ids already published would stop matching re-sent answers.
ANSWER_ID_NAMESPACE = uuid.UUID("8d0f6b64-1f0e-4c55-9a3e-2b6c3f5d7a10")


def default_answer_id(case_id: str, input_request_id: str, provided_context: str) -> str:
    """The deterministic id of an answer published without one."""
    name = "\x1f".join((case_id, input_request_id, provided_context))
    return f"ans_{uuid.uuid5(ANSWER_ID_NAMESPACE, name).hex}"


class Answer(BaseModel):
    """A message on ``answers``; unknown extra fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    caseId: NonBlank
    inputRequestId: NonBlank
    providedContext: NonBlank
    answerId: NonBlank | None = None
    submittedBy: str | None = None

    @model_validator(mode="after")
    def _default_answer_id(self) -> Answer:
        if self.answerId is None:
            self.answerId = default_answer_id(self.caseId, self.inputRequestId, self.providedContext)
        return self

    @property
    def answer_id(self) -> str:
        assert self.answerId is not None  # set by the validator
        return self.answerId


class RetryAnswer(Answer):
    """A message on ``answers.retry``: the answer, the attempt about to be made, and when."""

    attempt: int = Field(ge=1)
    notBefore: int = Field(ge=0, description="unix ms before which the attempt must not be made")
    notWaitingRetries: int = Field(
        default=0, ge=0, description="retries so far because the case was not waiting for input"
    )


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"

    @property
    def terminal(self) -> bool:
        return self is not Outcome.RETRYING


def now_ms() -> int:
    return int(time.time() * 1000)


class AnswerOutcome(BaseModel):
    """A message on ``answer-outcomes``."""

    answerId: str
    caseId: str
    inputRequestId: str | None = None
    outcome: Annotated[Outcome, OpenEnum()]
    attempt: int = Field(default=0, ge=0, description="calls made to Offload for this answer so far")
    httpStatus: int | None = None
    errorCode: str | None = None
    message: str = ""
    caseStatus: Annotated[str, OpenEnum(CASE_STATUSES)] | None = None
    currentInputRequestId: str | None = None
    at: int = Field(default_factory=now_ms, description="unix ms")
    submittedBy: str | None = Field(default=None, description="the answer's submittedBy, when it had one")
    nextAttemptAt: int | None = Field(
        default=None, description="retrying only: unix ms at which the next attempt is due"
    )


class DlqHeader(StrEnum):
    """Headers of a record on a DLQ (``answers.dlq``, ``case-requests.dlq``; built by ``schemas.dlq``);
    its value is the original message, byte for byte. ``answer_id`` and ``attempt`` are the answers' own."""

    OUTCOME = "outcome"  # rejected | dead_lettered (case requests: also unknown)
    ERROR = "error"  # one line saying why
    ERROR_CODE = "error_code"  # Offload's error code or ours (e.g. INVALID_ANSWER), when there is one
    HTTP_STATUS = "http_status"
    ANSWER_ID = "answer_id"
    ATTEMPT = "attempt"
    ORIGINAL_TOPIC = "original_topic"
    ORIGINAL_PARTITION = "original_partition"
    ORIGINAL_OFFSET = "original_offset"
    DEAD_LETTERED_AT = "dead_lettered_at"  # unix ms
