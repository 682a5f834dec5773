"""What we know about an answer's case: from the case-state table, and from Offload's ``GET /cases/{id}``.

Pure functions; the delivery code decides when to look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from offload_bridge.schemas.answers import Answer, Outcome
from offload_bridge.schemas.case_state import CaseRecord
from offload_bridge.streams.answers.policy import AnswerContext
from offload_bridge.streams.offload_api import OffloadReply

PENDING = "PENDING"


@dataclass(frozen=True)
class CaseView:
    """The case's status and current question as one source sees them, for the outcome record."""

    status: str | None = None
    input_request_id: str | None = None
    delivered: bool = False  # the source shows this very answer as taken


def accepted_in_table(record: CaseRecord | None, answer: Answer) -> bool:
    """True when our state recorded this answerId accepted for this question."""
    if record is None:
        return False
    recorded = record.state.answers.get(answer.inputRequestId)
    return (
        recorded is not None
        and recorded.answerId == answer.answer_id
        and recorded.outcome == Outcome.ACCEPTED
    )


def table_view(record: CaseRecord | None, answer: Answer) -> CaseView:
    if record is None:
        return CaseView()
    state = record.state
    current = state.inputRequest.id if state.inputRequest is not None else None
    return CaseView(state.status, current, accepted_in_table(record, answer))


def table_context(record: CaseRecord | None, answer: Answer) -> AnswerContext:
    """The deciding context from our own state: the question counts as pending only while PENDING."""
    if record is None:
        return AnswerContext()
    question = record.state.inputRequest
    pending = question.id if question is not None and question.status == PENDING else None
    return AnswerContext(
        case_status=record.state.status,
        pending_input_request_id=pending,
        delivered=accepted_in_table(record, answer),
    )


def offload_view(reply: OffloadReply, answer: Answer) -> CaseView | None:
    """The case as ``GET /cases/{id}`` shows it; None when the reply is no case."""
    if not reply.ok or reply.data is None:
        return None
    data = reply.data
    status = data.get("status") if isinstance(data.get("status"), str) else None
    question = data.get("inputRequest")
    current = question.get("id") if isinstance(question, dict) else None
    return CaseView(
        status=status,
        input_request_id=current if isinstance(current, str) else None,
        delivered=_carries_answer(data.get("goal"), answer.providedContext),
    )


def _carries_answer(goal: Any, provided_context: str) -> bool:
    """Offload appends each answer to ``goal.knowledge.additionalHumanContext`` (a list or a text)."""
    knowledge = goal.get("knowledge") if isinstance(goal, dict) else None
    context = knowledge.get("additionalHumanContext") if isinstance(knowledge, dict) else None
    if isinstance(context, list):
        return any(isinstance(item, str) and item.strip() == provided_context for item in context)
    if isinstance(context, str):
        return provided_context in context
    return False


def merged_context(table: AnswerContext, offload: CaseView) -> AnswerContext:
    """Offload's status wins (it is current); whether the question is pending is our own state's view."""
    return AnswerContext(
        case_status=offload.status or table.case_status,
        pending_input_request_id=table.pending_input_request_id,
        delivered=table.delivered or offload.delivered,
    )
