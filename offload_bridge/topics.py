"""The topic registry: every topic of the design contract, declared once.

Each ``TopicSpec`` says everything about one topic: its name, key, value model, headers, how its records
are partitioned, how long it keeps them and why (``Retention``), its broker configuration, and who writes
and reads it. Everything else is derived from it: ``topics create``, ``check`` and ``apply``
(``offload_bridge.kafka.admin``, ``offload_bridge.kafka.topic_configs``), the worker's Faust topics
(``offload_bridge.kafka.faust_topics``), and the JSON Schemas and AsyncAPI document other teams read
(``offload_bridge.contracts``, ``offload-bridge schemas export``).

Names are relative (``case-events``); the full name carries ``OFFLOAD_TOPIC_PREFIX`` in front
(``offload.case-events``). Code asks ``topic_name(CASE_EVENTS, settings)`` and never spells a topic name
itself. Only pydantic models are imported here, no Kafka or Faust client: a team's light install uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel

from offload_bridge.schemas.answers import Answer, AnswerOutcome, DlqHeader, RetryAnswer
from offload_bridge.schemas.case_requests import CaseRequest, CaseRequestOutcome, RetryCaseRequest
from offload_bridge.schemas.case_state import CaseState
from offload_bridge.schemas.case_watch import CaseWatch
from offload_bridge.schemas.events import CaseEvent
from offload_bridge.schemas.headers import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    ORIGIN_HEADER,
    RECEIVED_AT_HEADER,
    REDRIVEN_FROM_HEADER,
    SOURCE_HEADER,
    VALIDATION_ERROR_HEADER,
)
from offload_bridge.settings import DAY_MS, FOREVER_MS, WORKER_OUTAGE_SURVIVED_MS, Settings

KeyKind = Literal["caseId", "requestId"]


class Party(StrEnum):
    """Who writes or reads a topic.

    The service is the ingress and the worker's agents; everything else is one of its clients: the teams
    (their own services, and the commands and Python clients we give them), the operators' commands,
    downstream and analytics readers, the exporter and the inbox. The AsyncAPI document describes the
    service, so only service parties make its send and receive operations. Each party belongs to one Kafka
    role (``offload_bridge.roles``), whose permissions are derived from these lists.
    """

    INGRESS = "ingress"
    STATE_AGENT = "case-state agent (worker)"
    ANSWER_AGENT = "answer agents (worker)"  # answers and answers.retry share one delivery
    CASE_REQUEST_AGENT = "case-request agent (worker)"
    RECONCILER = "reconciler (worker)"
    CASE_WATCH_AGENT = "case-watch agent (worker)"
    TEAMS = "other teams"
    # What we give the teams: `answer`, `create-case`, `track`, and AnswerSubmitter, CaseRequestSubmitter
    # and CaseWatcher in Python. They read partitions by assignment, in no consumer group.
    TEAM_COMMANDS = "team commands (answer, create-case, track) and Python clients"
    # `tail` (every topic but the worker's internal ones), `dlq list|redrive`, `reconcile`; `topics
    # create|check|apply` manage every topic.
    OPERATOR_COMMANDS = "operator commands (tail, dlq, reconcile)"
    # Downstream services and analytics: what happened and the latest state, read only.
    READERS = "downstream services and analytics"
    EXPORTER = "offload-bridge export"
    # `offload-bridge inbox`: people answer in a browser. It reads the questions, the answers and their
    # outcomes (who answered what, and what became of it) and publishes answers; by assignment, in no group.
    INBOX = "offload-bridge inbox"

    @property
    def in_service(self) -> bool:
        return self in _SERVICE

    @property
    def in_worker(self) -> bool:
        return self in _SERVICE and self is not Party.INGRESS


_SERVICE = frozenset(
    {
        Party.INGRESS,
        Party.STATE_AGENT,
        Party.ANSWER_AGENT,
        Party.CASE_REQUEST_AGENT,
        Party.RECONCILER,
        Party.CASE_WATCH_AGENT,
    }
)


# Kafka's default partitioner on the key; DESIGN.md asks it of every producer, whatever its library.
BY_CASE = (
    "Kafka's default partitioner on the caseId (murmur2 % OFFLOAD_TOPIC_PARTITIONS), like every caseId-keyed"
    " topic: the worker's tables stay co-partitioned with case-events"
)
BY_REQUEST = (
    "Kafka's default partitioner on the requestId (murmur2 % OFFLOAD_TOPIC_PARTITIONS): the worker remembers"
    " each request in the partition it came from"
)


@dataclass(frozen=True)
class Retention:
    """How long a topic keeps its records (its ``retention.ms``), and why: part of the topic's contract."""

    ms: int | None  # None: the history's, OFFLOAD_HISTORY_RETENTION_MS (forever unless bounded)
    why: str

    def retention_ms(self, settings: Settings | None = None) -> int:
        """The ``retention.ms`` to set; without settings, the default the contracts document."""
        if self.ms is not None:
            return self.ms
        if settings is None:
            default: int = Settings.model_fields["offload_history_retention_ms"].default
            return default
        return settings.offload_history_retention_ms


# What happened, as Offload and the teams said it: every webhook body, question, answer and its outcome,
# case request and its outcome, watch request. Kept forever by default, because nothing else keeps it:
# case-state holds only the latest state of a case, and an audit ("who answered what, when"), an analyst's
# backfill or a downstream service back after a long outage reads it here. OFFLOAD_HISTORY_RETENTION_MS
# bounds it for those who must (never below the worker outage we survive: the worker reads these topics).
HISTORY = Retention(
    None,
    "The record of what happened: kept forever by default (retention.ms -1);"
    " OFFLOAD_HISTORY_RETENTION_MS bounds it (at least 7 days).",
)
# A retry record is the only copy of an answer or request between two attempts: the record it continues is
# already committed. While a worker runs, a record not yet due is written again about once a second
# (streams/retry.py), whatever OFFLOAD_RETRY_MAX_S or a Retry-After say, so its age is the time since a
# worker last read it: only a worker outage ages it. 14 days is twice the outage we promise to survive
# (WORKER_OUTAGE_SURVIVED_MS, 7 days): a worker back after a week still finds every retry, with another
# week for the time it takes to notice, fix and catch up. Retries are few and small, so the cost is nil.
RETRY = Retention(
    2 * WORKER_OUTAGE_SURVIVED_MS,
    f"{2 * WORKER_OUTAGE_SURVIVED_MS // DAY_MS} days: twice the 7-day worker outage the bridge survives;"
    " a retry not yet due is rewritten about once a second while a worker runs, so only an outage ages it.",
)
# A dead letter waits for a person's decision (`dlq list`, fix the cause, `dlq redrive`), which needs the
# original bytes, and no time limit can say when that decision is made: an alert fires on the first one,
# but an unhandled letter that expired would be an answer or request lost without anyone deciding so.
# Dead letters are failures only, so keeping them all costs little; `dlq redrive --all` remembers how far
# it got, so the handled ones are not redriven again.
DEAD_LETTERS = Retention(
    FOREVER_MS,
    "Forever: a dead letter waits for a person's decision (dlq redrive) and no deadline can say when it"
    " is made; dead letters are failures only, so they are few.",
)


@dataclass(frozen=True)
class TopicSpec:
    """One topic, as every part of the project and every team sees it."""

    name: str  # after OFFLOAD_TOPIC_PREFIX
    title: str
    summary: str
    key: KeyKind
    # None: the value is whatever arrived, byte for byte (the event log, quarantine and dead letters).
    model: type[BaseModel] | None
    writers: tuple[Party, ...]
    readers: tuple[Party, ...]
    partitioning: str
    headers: dict[str, str] = field(default_factory=dict)  # name -> what it holds
    key_always_set: bool = True  # False: a record may have no key (it could not be read from the value)
    compacted: bool = False  # keeps the latest record per key; retention.ms does not apply
    retention: Retention | None = None  # every topic that is not compacted declares one
    extra_config: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.retention is None) != self.compacted:
            raise ValueError(f"topic {self.name}: declare a retention exactly when it is not compacted")

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"

    def config(self, settings: Settings | None = None) -> dict[str, str]:
        """The broker configs ``topics create`` sets and ``topics check`` compares.

        Without settings: the defaults, as the AsyncAPI document shows them.
        """
        if self.retention is None:
            policy = {"cleanup.policy": "compact"}
        else:
            policy = {"cleanup.policy": "delete", "retention.ms": str(self.retention.retention_ms(settings))}
        return {**policy, **self.extra_config}

    @property
    def key_description(self) -> str:
        return self.key if self.key_always_set else f"{self.key} when readable, else none"

    @property
    def service_writes(self) -> bool:
        return any(party.in_service for party in self.writers)

    @property
    def service_reads(self) -> bool:
        return any(party.in_service for party in self.readers)

    @property
    def internal(self) -> bool:
        """Written and read by the worker alone: no team, operator or downstream reader has a reason to touch
        it (nor is allowed to: ``offload_bridge.roles``)."""
        return all(party.in_worker for party in (*self.writers, *self.readers))


EVENT_HEADERS = {
    EVENT_TYPE_HEADER: "the envelope's event_type, e.g. case.input_needed",
    EVENT_ID_HEADER: "the envelope's event_id: evt_<caseId>_<event_type with . -> _>_<updatedAt>",
    RECEIVED_AT_HEADER: "unix ms when offload-bridge received or made the event, as ASCII digits",
    SOURCE_HEADER: "webhook (the ingress), reconciler (synthesized from GET /cases/{id}) or bridge",
}
ORIGIN_HEADERS = {
    ORIGIN_HEADER: "on terminal outcomes only: <topic>:<partition>:<offset> of the record this outcome ends"
}
# The case-request agent's dead letters carry every DLQ header but the answer's id and attempt.
REDRIVEN_FROM = "on a record `dlq redrive` republished: <topic>:<partition>:<offset> of its dead letter"
_ANSWER_ONLY_DLQ_HEADERS = (DlqHeader.ANSWER_ID, DlqHeader.ATTEMPT)
ANSWER_DLQ_HEADERS = {header.value: header.name.lower().replace("_", " ") for header in DlqHeader}
CASE_REQUEST_DLQ_HEADERS = {
    name: text for name, text in ANSWER_DLQ_HEADERS.items() if name not in _ANSWER_ONLY_DLQ_HEADERS
}

# Webhook bodies go in unchanged, up to OFFLOAD_WEBHOOK_MAX_BYTES (at most 2 MiB), plus headers; the
# broker's default record limit (1 MiB) would refuse a body near the default cap.
_WEBHOOK_RECORD_LIMIT = {"max.message.bytes": str(2 * 1024 * 1024 + 64 * 1024)}

CASE_EVENTS = TopicSpec(
    "case-events",
    "Case event",
    "An Offload webhook body, byte for byte as received (source of truth).",
    "caseId",
    CaseEvent,
    # The case-request agent writes case.created for a case it made; the operators: `reconcile`.
    writers=(Party.INGRESS, Party.RECONCILER, Party.CASE_REQUEST_AGENT, Party.OPERATOR_COMMANDS),
    readers=(Party.STATE_AGENT, Party.READERS, Party.EXPORTER, Party.INBOX, Party.OPERATOR_COMMANDS),
    partitioning=BY_CASE,
    retention=HISTORY,
    headers=EVENT_HEADERS,
    extra_config=_WEBHOOK_RECORD_LIMIT,
)
CASE_EVENTS_INVALID = TopicSpec(
    "case-events.invalid",
    "Quarantined webhook",
    "An authenticated webhook body that failed the event schema, as received.",
    "caseId",
    None,
    writers=(Party.INGRESS, Party.STATE_AGENT),
    readers=(Party.OPERATOR_COMMANDS,),  # `tail --topic case-events.invalid`
    partitioning=f"{BY_CASE}; records without a key are spread over the partitions",
    retention=HISTORY,
    headers={
        VALIDATION_ERROR_HEADER: "the ingress: why the body failed the schema",
        **EVENT_HEADERS,
        EVENT_TYPE_HEADER: f"{EVENT_HEADERS[EVENT_TYPE_HEADER]}; only when the body has a usable one",
        EVENT_ID_HEADER: f"{EVENT_HEADERS[EVENT_ID_HEADER]}; only when the body has a usable one",
        # The worker's copy of a case-events record that is not an event keeps that record's headers too.
        DlqHeader.ERROR.value: "the worker: why a case-events record is not a valid event",
        DlqHeader.ORIGINAL_TOPIC.value: "the worker: the case-events topic the record was read from",
        DlqHeader.ORIGINAL_PARTITION.value: "the worker: its partition there",
        DlqHeader.ORIGINAL_OFFSET.value: "the worker: its offset there",
    },
    key_always_set=False,
    extra_config=_WEBHOOK_RECORD_LIMIT,
)
CASE_STATE = TopicSpec(
    "case-state",
    "Case state",
    "The latest state of one case (compacted).",
    "caseId",
    CaseState,
    writers=(Party.STATE_AGENT, Party.ANSWER_AGENT),
    readers=(Party.READERS, Party.INBOX, Party.OPERATOR_COMMANDS),  # the operators: `reconcile`
    partitioning=BY_CASE,
    compacted=True,
)
ANSWERS = TopicSpec(
    "answers",
    "Answer",
    "An answer to one of Offload's questions.",
    "caseId",
    Answer,
    # `answer`; the inbox's answer form; `dlq redrive`
    writers=(Party.TEAMS, Party.TEAM_COMMANDS, Party.INBOX, Party.OPERATOR_COMMANDS),
    # The inbox: who answered a case's earlier questions, and what (case-state keeps only the answer's id).
    readers=(Party.ANSWER_AGENT, Party.INBOX, Party.OPERATOR_COMMANDS),
    partitioning=BY_CASE,
    retention=HISTORY,
    headers={REDRIVEN_FROM_HEADER: REDRIVEN_FROM},
)
ANSWER_OUTCOMES = TopicSpec(
    "answer-outcomes",
    "Answer outcome",
    "What became of an answer; exactly one terminal outcome per answer record.",
    "caseId",
    AnswerOutcome,
    writers=(Party.ANSWER_AGENT,),
    # The answer agents read their own outcomes back after a crash (see ORIGIN_HEADER); `answer --wait`.
    readers=(
        Party.TEAMS,
        Party.TEAM_COMMANDS,
        Party.ANSWER_AGENT,
        Party.READERS,
        Party.EXPORTER,
        Party.INBOX,
        Party.OPERATOR_COMMANDS,
    ),
    partitioning=BY_CASE,
    retention=HISTORY,
    headers=ORIGIN_HEADERS,
)
ANSWERS_RETRY = TopicSpec(
    "answers.retry",
    "Answer retry",
    "An answer waiting for its next attempt.",
    "caseId",
    RetryAnswer,
    writers=(Party.ANSWER_AGENT,),
    readers=(Party.ANSWER_AGENT,),
    partitioning=BY_CASE,
    retention=RETRY,
    headers={ORIGIN_HEADER: "<topic>:<partition>:<offset> of the answer record this retry continues"},
)
ANSWERS_DLQ = TopicSpec(
    "answers.dlq",
    "Dead-lettered answer",
    "The original message byte for byte; headers say why and where it came from.",
    "caseId",
    None,
    writers=(Party.ANSWER_AGENT,),
    readers=(Party.OPERATOR_COMMANDS,),  # `dlq list|redrive`
    partitioning=BY_CASE,
    retention=DEAD_LETTERS,
    headers=ANSWER_DLQ_HEADERS,
)
CASE_REQUESTS = TopicSpec(
    "case-requests",
    "Case request",
    "A create-case body plus requestId.",
    "requestId",
    CaseRequest,
    writers=(Party.TEAMS, Party.TEAM_COMMANDS, Party.OPERATOR_COMMANDS),  # `create-case`; `dlq redrive`
    readers=(Party.CASE_REQUEST_AGENT, Party.OPERATOR_COMMANDS),
    partitioning=BY_REQUEST,
    retention=HISTORY,
    headers={
        REDRIVEN_FROM_HEADER: f"{REDRIVEN_FROM}; a request that ended dead_lettered, rejected or unknown "
        "gets a fresh attempt"
    },
)
CASE_REQUEST_OUTCOMES = TopicSpec(
    "case-request-outcomes",
    "Case request outcome",
    "What became of a case request; exactly one terminal outcome per request record.",
    "requestId",
    CaseRequestOutcome,
    writers=(Party.CASE_REQUEST_AGENT,),
    # The case-request agent reads its own outcomes back after a crash (see ORIGIN_HEADER);
    # `create-case --wait`.
    readers=(
        Party.TEAMS,
        Party.TEAM_COMMANDS,
        Party.CASE_REQUEST_AGENT,
        Party.READERS,
        Party.EXPORTER,
        Party.OPERATOR_COMMANDS,
    ),
    partitioning=BY_REQUEST,
    retention=HISTORY,
    headers=ORIGIN_HEADERS,
)
CASE_REQUESTS_RETRY = TopicSpec(
    "case-requests.retry",
    "Case request retry",
    "A case request that provably did not reach Offload, waiting for its next attempt.",
    "requestId",
    RetryCaseRequest,
    writers=(Party.CASE_REQUEST_AGENT,),
    readers=(Party.CASE_REQUEST_AGENT,),
    partitioning=BY_REQUEST,
    retention=RETRY,
    headers={ORIGIN_HEADER: "<topic>:<partition>:<offset> of the request record this retry continues"},
)
CASE_REQUESTS_DLQ = TopicSpec(
    "case-requests.dlq",
    "Dead-lettered case request",
    "The original request byte for byte; headers say why and where it came from.",
    "requestId",
    None,
    writers=(Party.CASE_REQUEST_AGENT,),
    readers=(Party.OPERATOR_COMMANDS,),  # operators redrive on purpose (DESIGN.md: at most once)
    partitioning=BY_REQUEST,
    retention=DEAD_LETTERS,
    headers=CASE_REQUEST_DLQ_HEADERS,
)
CASE_WATCH = TopicSpec(
    "case-watch",
    "Case watch",
    "A case created outside offload-bridge (with Offload's POST /cases directly): the worker fetches it from"
    " Offload at once, then keeps it reconciled like any other.",
    "caseId",
    CaseWatch,
    writers=(Party.TEAMS, Party.TEAM_COMMANDS, Party.OPERATOR_COMMANDS),  # `track`; `dlq redrive`
    readers=(Party.CASE_WATCH_AGENT, Party.OPERATOR_COMMANDS),
    partitioning=BY_CASE,
    retention=HISTORY,
    headers={REDRIVEN_FROM_HEADER: REDRIVEN_FROM},
    # Not compacted: every request counts, even for a case watched before.
)

CASE_WATCH_DLQ = TopicSpec(
    "case-watch.dlq",
    "Dead-lettered case watch",
    "A case-watch record the worker could not act on (not a watch request, or a case Offload does not"
    " know or refuses), byte for byte; headers say why and where it came from.",
    "caseId",
    None,
    writers=(Party.CASE_WATCH_AGENT,),
    readers=(Party.OPERATOR_COMMANDS,),  # operators look, fix the id, and track again (or redrive)
    partitioning=BY_CASE,
    retention=DEAD_LETTERS,
    headers=CASE_REQUEST_DLQ_HEADERS,
)

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
    CASE_REQUESTS_RETRY,
    CASE_REQUESTS_DLQ,
    CASE_WATCH,
    CASE_WATCH_DLQ,
)


class TopicMissing(RuntimeError):
    """A topic the command needs does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"topic {name} does not exist; run `offload-bridge topics create`")


def topic_name(spec: TopicSpec, settings: Settings) -> str:
    return spec.full_name(settings.offload_topic_prefix)
