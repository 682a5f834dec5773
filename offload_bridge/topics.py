"""The topic registry: every topic of the design contract, declared once.

Names are relative (``case-events``); the full name carries ``OFFLOAD_TOPIC_PREFIX`` in front
(``offload.case-events``). Code asks ``topic_name(CASE_EVENTS, settings)`` and never spells a
topic name itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from offload_bridge.settings import Settings

KeyKind = Literal["caseId", "requestId"]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: KeyKind
    value: str
    compacted: bool = False
    extra_config: dict[str, str] = field(default_factory=dict)

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"

    def config(self) -> dict[str, str]:
        policy = {"cleanup.policy": "compact"} if self.compacted else {"cleanup.policy": "delete"}
        return {**policy, **self.extra_config}


# Webhook bodies go in unchanged, up to OFFLOAD_WEBHOOK_MAX_BYTES (at most 2 MiB), plus headers; the
# broker's default record limit (1 MiB) would refuse a body near the default cap.
_WEBHOOK_RECORD_LIMIT = {"max.message.bytes": str(2 * 1024 * 1024 + 64 * 1024)}
CASE_EVENTS = TopicSpec(
    "case-events",
    "caseId",
    "webhook body byte for byte; headers event_type, event_id, received_at, source",
    extra_config=_WEBHOOK_RECORD_LIMIT,
)
CASE_EVENTS_INVALID = TopicSpec(
    "case-events.invalid",
    "caseId",
    "body as received; headers with the validation error",
    extra_config=_WEBHOOK_RECORD_LIMIT,
)
CASE_STATE = TopicSpec("case-state", "caseId", "CaseState JSON, latest per case", compacted=True)
ANSWERS = TopicSpec("answers", "caseId", "{caseId, inputRequestId, providedContext, answerId?, submittedBy?}")
ANSWER_OUTCOMES = TopicSpec("answer-outcomes", "caseId", "one terminal outcome per answer")
ANSWERS_RETRY = TopicSpec("answers.retry", "caseId", "the answer + attempt, notBefore")
ANSWERS_DLQ = TopicSpec(
    "answers.dlq", "caseId", "the raw message; headers with error, original topic/partition/offset"
)
CASE_REQUESTS = TopicSpec("case-requests", "requestId", "create-case body + requestId")
CASE_REQUEST_OUTCOMES = TopicSpec(
    "case-request-outcomes", "requestId", "{requestId, outcome, caseId?, httpStatus, errorCode, message, at}"
)
CASE_REQUESTS_DLQ = TopicSpec(
    "case-requests.dlq", "requestId", "the raw request; headers with error, original topic/partition/offset"
)
# The worker's own delayed attempts of case requests (like answers.retry). Not in ALL_TOPICS until its
# contract joins the registry; the worker creates it with WORKER_TOPICS.
CASE_REQUESTS_RETRY = TopicSpec("case-requests.retry", "requestId", "the case request + attempt, notBefore")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    CASE_EVENTS,
    CASE_EVENTS_INVALID,
    CASE_STATE,
    ANSWERS,
    ANSWER_OUTCOMES,
    ANSWERS_RETRY,
    ANSWERS_DLQ,
    CASE_REQUESTS,
    CASE_REQUEST_OUTCOMES,
    CASE_REQUESTS_DLQ,
)


# Every topic the streams worker reads or writes.
WORKER_TOPICS: tuple[TopicSpec, ...] = (*ALL_TOPICS, CASE_REQUESTS_RETRY)


class TopicMissing(RuntimeError):
    """A topic the command needs does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"topic {name} does not exist; run `offload-bridge topics create`")


def topic_name(spec: TopicSpec, settings: Settings) -> str:
    return spec.full_name(settings.offload_topic_prefix)
