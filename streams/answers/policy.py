"""What an answer's delivery attempt means: pure decisions, no I/O.

The rules are DESIGN.md's: 202 accepted; 409 classified by its code, and a re-sent answer Offload already
took is ``duplicate``, never ``conflict``; 429/5xx/timeouts retried with backoff (``Retry-After`` honoured);
400/404 rejected; 401/403 dead-lettered (redrivable once the key is fixed).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from offload_bridge.streams.offload_api import OffloadReply, OffloadUnreachable
from offload_bridge.streams.retry import RETRYABLE_STATUSES, backoff_s

__all__ = ["RETRYABLE_STATUSES", "backoff_s"]  # the retry rules answers follow, next to the decisions

CASE_NOT_WAITING_FOR_INPUT = "CASE_NOT_WAITING_FOR_INPUT"
INPUT_REQUEST_NOT_PENDING = "INPUT_REQUEST_NOT_PENDING"
INPUT_REQUEST_MISMATCH = "INPUT_REQUEST_MISMATCH"

TERMINAL_CASE_STATUSES = frozenset({"COMPLETED", "FAILED"})


class AnswerDecision(StrEnum):
    """What the answer delivery does next after one ``POST /cases/{id}/input``."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"
    DEAD_LETTER = "dead_letter"
    RETRY = "retry"  # transient: backoff, up to the attempt budget
    RETRY_NOT_WAITING = "retry_not_waiting"  # our state says pending: a few quick tries, then conflict


@dataclass(frozen=True)
class AnswerContext:
    """What we know about the case when deciding about a reply."""

    case_status: str | None = None
    pending_input_request_id: str | None = None
    # True when Offload provably has this answer: our state recorded it accepted, or the case's
    # goal.knowledge.additionalHumanContext carries its text.
    delivered: bool = False


def decide_answer(
    result: OffloadReply | OffloadUnreachable, input_request_id: str, context: AnswerContext
) -> AnswerDecision:
    if isinstance(result, OffloadUnreachable):
        return AnswerDecision.RETRY
    status = result.status
    if 200 <= status < 300:
        return AnswerDecision.ACCEPTED
    if status == 409:
        return _decide_conflict(result.error_code, input_request_id, context)
    if status in RETRYABLE_STATUSES or status >= 500:
        return AnswerDecision.RETRY
    if status in (401, 403):
        return AnswerDecision.DEAD_LETTER
    return AnswerDecision.REJECTED


def _decide_conflict(code: str | None, input_request_id: str, context: AnswerContext) -> AnswerDecision:
    if context.delivered:
        return AnswerDecision.DUPLICATE
    if code == CASE_NOT_WAITING_FOR_INPUT:
        still_pending = context.pending_input_request_id == input_request_id
        if still_pending and context.case_status not in TERMINAL_CASE_STATUSES:
            return AnswerDecision.RETRY_NOT_WAITING
    return AnswerDecision.CONFLICT


def needs_delivery_check(result: OffloadReply | OffloadUnreachable, context: AnswerContext) -> bool:
    """A 409 that could be our own earlier delivery: worth a look at the case before deciding."""
    return isinstance(result, OffloadReply) and result.status == 409 and not context.delivered
