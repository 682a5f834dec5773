"""The rows of the analytics tables ``offload-bridge export`` writes as Parquet (one model per table).

Field names are the Parquet column names (snake_case, as SQL engines expect them). Times are UTC
timestamps with millisecond precision. ``events``, ``answers`` and ``case_requests`` are facts, one row per
Kafka record kept (written once, never changed); ``questions`` and ``cases`` are derived from the facts by
SQL (``offload_bridge/analytics/sql/``) and replaced as a whole at each snapshot.

Every field is a column in this order; a column may be added at the end (nullable) in a minor release, and
never removed or retyped (see the docs, "Evolve the contracts").
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class _Row(BaseModel):
    pass


class EventRow(_Row):
    """One distinct ``event_id`` of ``case-events`` (a later record with the same id is not a new row)."""

    event_id: str = Field(description="the envelope's event_id")
    case_id: str = Field(description="data.caseId")
    event_type: str = Field(description="the envelope's event_type, e.g. case.input_needed")
    status: str = Field(description="data.status: the case's status after this event")
    result_status: str | None = Field(description="data.resultStatus (terminal events)")
    event_time: datetime = Field(description="the envelope's timestamp: when the case changed at Offload")
    received_at: datetime = Field(description="when offload-bridge received or made the event")
    source: str | None = Field(description="webhook, reconciler or bridge")
    input_request_id: str | None = Field(description="data.inputRequestId (case.input_needed)")
    question: str | None = Field(description="data.inputRequest: the question's text (case.input_needed)")
    attempt_count: int | None = Field(description="data.attemptCount")
    client_reference_id: str | None = Field(description="data.clientReferenceId")
    channel: str | None = Field(description="data.channel")
    failure_reason: str | None = Field(description="data.failureReason (case.failed)")
    body: str = Field(description="the webhook body as Kafka holds it (JSON text)")
    # Where the fact came from: with the topic it names the record, so a row can be traced back.
    kafka_partition: int = Field(description="partition of the record in its topic")
    kafka_offset: int = Field(description="offset of the record in its partition")


class AnswerRow(_Row):
    """One terminal outcome of ``answer-outcomes`` (``retrying`` is not terminal and makes no row)."""

    answer_id: str
    case_id: str
    input_request_id: str | None
    outcome: str = Field(description="accepted, duplicate, conflict, rejected or dead_lettered (open)")
    http_status: int | None = Field(description="Offload's HTTP status of the last call, if one was made")
    error_code: str | None
    attempt: int = Field(description="calls made to Offload for this answer")
    submitted_by: str | None = Field(description="the answer's submittedBy")
    at: datetime = Field(description="when the outcome was decided")
    # Where the fact came from: with the topic it names the record, so a row can be traced back.
    kafka_partition: int = Field(description="partition of the record in its topic")
    kafka_offset: int = Field(description="offset of the record in its partition")


class CaseRequestRow(_Row):
    """One terminal outcome of ``case-request-outcomes`` (``retrying`` makes no row)."""

    request_id: str
    case_id: str | None = Field(description="the case Offload created, when it did")
    outcome: str = Field(description="created, duplicate, rejected, dead_lettered or unknown (open)")
    http_status: int | None
    error_code: str | None
    at: datetime
    # Where the fact came from: with the topic it names the record, so a row can be traced back.
    kafka_partition: int = Field(description="partition of the record in its topic")
    kafka_offset: int = Field(description="offset of the record in its partition")


class QuestionRow(_Row):
    """One ``inputRequestId``: when it was asked, when and how it was settled."""

    case_id: str
    input_request_id: str
    question: str | None
    asked_at: datetime = Field(description="event_time of the first case.input_needed with this id")
    answered_at: datetime | None = Field(
        description="time of the answer that settled it (accepted, or duplicate), else of the first event"
        " that shows the case past the question (answered outside offload-bridge); null while it waits"
    )
    answer_id: str | None = Field(description="the settling answer, when it came through offload-bridge")
    answer_outcome: str | None = Field(description="that answer's outcome, else the last answer's")
    submitted_by: str | None
    wait_ms: int | None = Field(description="answered_at - asked_at in ms; null while it waits")


class CaseRow(_Row):
    """The latest state of one case, as its newest event (by event_time) shows it, with derived facts."""

    case_id: str
    client_reference_id: str | None
    status: str
    result_status: str | None
    channel: str | None
    attempt_count: int | None
    failure_reason: str | None
    last_event_type: str
    last_event_at: datetime
    first_seen_at: datetime = Field(description="event_time of the case's first event")
    completed_at: datetime | None = Field(description="event_time of its first terminal event")
    duration_ms: int | None = Field(description="completed_at - first_seen_at in ms")
    questions: int = Field(description="distinct questions asked")
    answers_accepted: int = Field(description="answers of ours Offload took (accepted or duplicate)")
