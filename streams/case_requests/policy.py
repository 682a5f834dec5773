"""What a ``POST /cases`` attempt means: pure decisions, no I/O.

Case creation is at most once: ``POST /cases`` is not idempotent, so only what provably did not reach
Offload is sent again. 2xx with a caseId: created. 400: rejected. 429 ``USAGE_LIMIT_REACHED``: rejected
with the code (a monthly cap will not lift in minutes). Other 429 and a connection refused before the
request was sent: retried with backoff. 5xx, 408/425, a timeout or a connection lost after sending:
unknown (Offload may have created the case; an operator checks and redrives on purpose). 401/403:
dead-lettered (a key problem: fixed by an operator, then republished). Other 4xx: rejected. A 2xx
without a caseId: unknown (something may have been created that we cannot name).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from offload_bridge.streams.offload_api import OffloadReply, OffloadUnreachable
from offload_bridge.streams.retry import RETRYABLE_STATUSES

USAGE_LIMIT_REACHED = "USAGE_LIMIT_REACHED"


class CaseRequestDecision(StrEnum):
    """What case creation does next with a request after one ``POST /cases``."""

    CREATED = "created"
    REJECTED = "rejected"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DecidedReply:
    """The decision about one reply, with the details of the reply its outcome reports."""

    decision: CaseRequestDecision
    case_id: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    message: str = ""
    retry_after_s: float | None = None


def decide_case_request(result: OffloadReply | OffloadUnreachable) -> DecidedReply:
    if isinstance(result, OffloadUnreachable):
        if result.reached:
            message = f"{result}: the request may have reached Offload, so it is not sent again"
            return DecidedReply(CaseRequestDecision.UNKNOWN, message=message)
        return DecidedReply(CaseRequestDecision.RETRY, message=str(result))

    def decided(
        decision: CaseRequestDecision, case_id: str | None = None, message: str | None = None
    ) -> DecidedReply:
        text = result.error_message if message is None else message
        return DecidedReply(
            decision, case_id, result.status, result.error_code, text, result.retry_after_s
        )  # fmt: skip

    if result.ok:
        case_id = (result.data or {}).get("caseId")
        if isinstance(case_id, str) and case_id:
            return decided(CaseRequestDecision.CREATED, case_id)
        return decided(CaseRequestDecision.UNKNOWN, message="a 2xx without a caseId")
    if result.status == 429 and result.error_code == USAGE_LIMIT_REACHED:
        return decided(CaseRequestDecision.REJECTED)
    if result.status == 429:
        return decided(CaseRequestDecision.RETRY)  # refused before any work: safe to send again
    if result.status in RETRYABLE_STATUSES or result.status >= 500:
        # Offload may have created the case before failing; a second POST could create another.
        text = f"{result.error_message} (HTTP {result.status}; Offload may have created the case)"
        return decided(CaseRequestDecision.UNKNOWN, message=text)
    if result.status in (401, 403):
        return decided(CaseRequestDecision.DEAD_LETTER)
    return decided(CaseRequestDecision.REJECTED)
