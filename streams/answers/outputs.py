"""Where the answer agents write: outcomes, delayed retries, dead letters and the case-state changes.

The app's producer uses acks=all, and Faust flushes it before committing an offset, so everything sent
while handling a record is acknowledged before that record counts as done. Terminal outcomes go through
the journal (streams/journal.py): one per answer record, even when the record comes again after a crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import AnswerOutcome, Outcome, RetryAnswer
from offload_bridge.schemas.dlq import dlq_headers
from offload_bridge.schemas.headers import ORIGIN_HEADER
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.journal import OutcomeJournal
from offload_bridge.streams.messages import position

log = logging.getLogger("offload_bridge.streams.answers")


# What the answer agents did besides publishing outcomes (those are counted by kind, see ``outcome_counts``).
ANSWER_CALLS = (
    "calls",  # POST /cases/{id}/input made
    "case_lookups",  # GET /cases/{id} made to classify a 409
    "deferred",  # retry records not yet due, put back on answers.retry
    "failed",  # unexpected errors, each logged
    "redelivered",  # records seen again after a crash whose outcome was already published
)


def outcome_counts() -> Counters:
    return Counters(outcome.value for outcome in Outcome)


def call_counts() -> Counters:
    return Counters(ANSWER_CALLS)


@dataclass(frozen=True)
class Position:
    """Where a record came from."""

    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, message: Any) -> Position:
        return cls(*position(message))


class AnswerSink(Protocol):
    """Where the answer delivery writes; ``AnswerOutputs`` on Kafka, a recording in the in-process tests."""

    async def has_outcome(self, case_id: str, origin: str, partition: int) -> bool:
        """True when the answer record at ``origin`` already has its terminal outcome."""

    async def outcome(self, record: AnswerOutcome) -> None:
        """A non-terminal outcome (``retrying``)."""

    async def terminal(self, message: Any, origin: str, record: AnswerOutcome, dead_letter: bool) -> bool:
        """The one terminal outcome of the answer at ``origin``; False when it already has one."""

    async def schedule(self, retry: RetryAnswer, origin: str) -> None:
        """The next attempt on answers.retry."""

    async def defer(self, message: Any) -> None:
        """A retry record not yet due back on answers.retry, unchanged."""

    async def dead_letter(self, message: Any, case_id: str | None, outcome: AnswerOutcome) -> None:
        """The record on answers.dlq with what happened in its headers."""


class AnswerOutputs:
    """The topics the answer agents write to (faust TopicT, raw bytes)."""

    def __init__(
        self,
        outcomes: Any,
        retry: Any,
        dlq: Any,
        journal: OutcomeJournal,
        outcome_counts: Counters,
        call_counts: Counters,
    ) -> None:
        self.outcomes = outcomes
        self.journal = journal
        self.retry = retry
        self.dlq = dlq
        self.outcome_counts = outcome_counts
        self.call_counts = call_counts

    async def has_outcome(self, case_id: str, origin: str, partition: int) -> bool:
        return await self.journal.seen(case_id, origin, partition)

    async def outcome(self, record: AnswerOutcome) -> None:
        """A non-terminal outcome (``retrying``): it may be published again after a crash."""
        self.note(record)
        await self.outcomes.send(key=record.caseId.encode(), value=record.model_dump_json().encode())

    async def terminal(self, message: Any, origin: str, record: AnswerOutcome, dead_letter: bool) -> bool:
        """The one terminal outcome of the answer at ``origin`` (and its dead letter); False when it
        already has one (the record came again after a crash)."""
        partition = int(message.partition)
        if partition_for(record.caseId, self.journal.partitions) != partition:
            # Only an invalid record sits outside its caseId's partition; the journal keeps to the rule.
            if dead_letter:
                await self.dead_letter(message, record.caseId, record)
            await self.outcome(record)
            return True
        if not await self.journal.claim(record.caseId, origin, partition):
            self.call_counts.inc("redelivered")
            log.info("answer %s (%s): already has its outcome; not published again", record.answerId, origin)
            return False
        try:
            if dead_letter:
                await self.dead_letter(message, record.caseId, record)
        except BaseException:
            self.journal.unclaim(origin)
            raise
        self.note(record)
        await self.journal.publish(record.caseId, origin, record.model_dump_json().encode(), partition)
        return True

    def note(self, record: AnswerOutcome) -> None:
        self.outcome_counts.inc(record.outcome.value)
        level = (
            logging.WARNING if record.outcome in (Outcome.DEAD_LETTERED, Outcome.REJECTED) else logging.INFO
        )
        log.log(
            level,
            "answer %s of case %s: %s (attempt %s, http %s, code %s) %s",
            record.answerId, record.caseId, record.outcome.value, record.attempt, record.httpStatus,
            record.errorCode, record.message,
        )  # fmt: skip

    async def schedule(self, retry: RetryAnswer, origin: str) -> None:
        """The next attempt on answers.retry; it carries the origin of the answer it continues."""
        await self.retry.send(
            key=retry.caseId.encode(),
            value=retry.model_dump_json(exclude_none=True).encode(),
            headers=[(ORIGIN_HEADER, origin.encode())],
        )

    async def defer(self, message: Any) -> None:
        """Put a record not yet due back on answers.retry, unchanged, and wait for the broker to take it."""
        self.call_counts.inc("deferred")
        sent = await self.retry.send(
            key=message.key, value=message.value, headers=list(message.headers or ())
        )
        await sent

    async def dead_letter(
        self,
        message: Any,
        case_id: str | None,
        outcome: AnswerOutcome,
    ) -> None:
        """The record, byte for byte, on answers.dlq with what happened in its headers."""
        where = Position.of(message)
        headers = dlq_headers(
            outcome=outcome.outcome.value, error=outcome.message, error_code=outcome.errorCode,
            http_status=outcome.httpStatus, answer_id=outcome.answerId, attempt=outcome.attempt,
            topic=where.topic, partition=where.partition, offset=where.offset,
        )  # fmt: skip
        key = case_id.encode() if case_id else message.key
        await self.dlq.send(key=key, value=message.value, headers=headers)
