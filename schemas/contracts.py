"""Which model describes each topic's value, and which headers its records carry.

The checked-in ``schemas/*.schema.json`` and ``schemas/asyncapi.yaml`` are generated from this table and
the models it names (``offload-bridge schemas export``); a test fails when they drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from offload_bridge.schemas.answers import Answer, AnswerOutcome, DlqHeader, RetryAnswer
from offload_bridge.schemas.case_requests import CaseRequest, CaseRequestOutcome
from offload_bridge.schemas.case_state import CaseState
from offload_bridge.schemas.events import CaseEvent

EVENT_HEADERS = {
    "event_type": "the envelope's event_type, e.g. case.input_needed",
    "event_id": "the envelope's event_id: evt_<caseId>_<event_type with . -> _>_<updatedAt>",
    "received_at": "unix ms when offload-bridge received or made the event, as ASCII digits",
    "source": "webhook (the ingress), reconciler (synthesized from GET /cases/{id}) or bridge",
}


@dataclass(frozen=True)
class TopicContract:
    topic: str  # the name after OFFLOAD_TOPIC_PREFIX
    title: str
    summary: str
    # None: the value is whatever arrived, byte for byte (quarantine and dead-letter topics).
    model: type[BaseModel] | None
    key: str
    headers: dict[str, str] = field(default_factory=dict)
    # From offload-bridge's side: does it write the topic, read it, or both.
    bridge_sends: bool = True
    bridge_receives: bool = False


# On a terminal outcome, and on a retry: where the record it ends (or continues) sits. The worker reads it
# back after a crash so that no record gets a second terminal outcome.
ORIGIN_HEADER = "origin"
ORIGIN_HEADERS = {
    ORIGIN_HEADER: "on terminal outcomes only: <topic>:<partition>:<offset> of the record this outcome ends"
}


CONTRACTS: tuple[TopicContract, ...] = (
    TopicContract(
        "case-events",
        "Case event",
        "An Offload webhook body, byte for byte as received (source of truth).",
        CaseEvent,
        "caseId",
        EVENT_HEADERS,
        bridge_receives=True,
    ),
    TopicContract(
        "case-events.invalid",
        "Quarantined webhook",
        "An authenticated webhook body that failed the event schema, as received.",
        None,
        "caseId when readable, else none",
        {"validation_error": "why the body failed the schema", **EVENT_HEADERS},
    ),
    TopicContract(
        "case-state", "Case state", "The latest state of one case (compacted).", CaseState, "caseId"
    ),
    TopicContract(
        "answers",
        "Answer",
        "An answer to one of Offload's questions.",
        Answer,
        "caseId",
        bridge_sends=False,
        bridge_receives=True,
    ),
    TopicContract(
        "answer-outcomes",
        "Answer outcome",
        "What became of an answer; exactly one terminal outcome per answer record.",
        AnswerOutcome,
        "caseId",
        ORIGIN_HEADERS,
    ),
    TopicContract(
        "answers.retry",
        "Answer retry",
        "An answer waiting for its next attempt.",
        RetryAnswer,
        "caseId",
        {ORIGIN_HEADER: "<topic>:<partition>:<offset> of the answer record this retry continues"},
        bridge_receives=True,
    ),
    TopicContract(
        "answers.dlq",
        "Dead-lettered answer",
        "The original message byte for byte; headers say why and where it came from.",
        None,
        "caseId",
        {header.value: header.name.lower().replace("_", " ") for header in DlqHeader},
    ),
    TopicContract(
        "case-requests",
        "Case request",
        "A create-case body plus requestId.",
        CaseRequest,
        "requestId",
        bridge_sends=False,
        bridge_receives=True,
    ),
    TopicContract(
        "case-request-outcomes",
        "Case request outcome",
        "What became of a case request; exactly one terminal outcome per request record.",
        CaseRequestOutcome,
        "requestId",
        ORIGIN_HEADERS,
    ),
    TopicContract(
        "case-requests.dlq",
        "Dead-lettered case request",
        "The original request byte for byte; headers say why and where it came from.",
        None,
        "requestId",
        {
            header.value: header.name.lower().replace("_", " ")
            for header in DlqHeader
            if header not in (DlqHeader.ANSWER_ID, DlqHeader.ATTEMPT)
        },
    ),
)
