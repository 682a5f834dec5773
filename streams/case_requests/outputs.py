"""Where case creation writes: outcomes (terminal ones through the journal), delayed attempts, dead
letters, and the ``case.created`` event that tells the state table about a new case.

Pure I/O: what to write is decided in ``creation``. ``CaseRequestSink`` is the interface; the Kafka
implementation is ``CaseRequestOutputs``, and the in-process tests record instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.case_requests import (
    CaseRequest,
    CaseRequestOutcome,
    CaseRequestOutcomeKind,
    RetryCaseRequest,
)
from offload_bridge.schemas.dlq import dlq_headers
from offload_bridge.schemas.headers import ORIGIN_HEADER
from offload_bridge.streams.journal import OutcomeJournal
from offload_bridge.streams.reconcile.diff import SOURCE_BRIDGE, SynthesizedEvent, build_event


@dataclass(frozen=True)
class DeadLetter:
    """What the copy on case-requests.dlq says in its headers."""

    kind: CaseRequestOutcomeKind
    error: str
    code: str | None
    http_status: int | None = None


@dataclass(frozen=True)
class SourceRecord:
    """A case-requests record as its dead letter names and copies it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, message: Any) -> SourceRecord:
        return cls(
            str(message.topic), int(message.partition), int(message.offset), message.key, message.value
        )

    @classmethod
    def at_origin(cls, origin: str, request: CaseRequest) -> SourceRecord:
        """The record at ``origin`` (``<topic>:<partition>:<offset>``) a retry continues, its request
        as published (JSON)."""
        topic, partition, offset = origin.rsplit(":", 2)
        value = request.model_dump_json(exclude_unset=True).encode()
        return cls(topic, int(partition), int(offset), request.requestId.encode(), value)


class CaseRequestSink(Protocol):
    async def has_outcome(self, request_id: str, origin: str, partition: int) -> bool:
        """True when the request record at ``origin`` already has its terminal outcome."""

    async def terminal(
        self,
        partition: int,
        origin: str,
        outcome: CaseRequestOutcome,
        dead_letter: tuple[SourceRecord, DeadLetter] | None,
    ) -> bool:
        """The one terminal outcome of the record at ``origin`` (and its dead letter), handled in
        ``partition``; False when it already has one."""

    async def progress(self, outcome: CaseRequestOutcome) -> None:
        """A non-terminal outcome (``retrying``): it may be published again after a crash."""

    async def announce(self, case_id: str, request: CaseRequest, started: int) -> None:
        """A ``case.created`` event of a case just created, into case-events."""

    async def schedule(self, retry: RetryCaseRequest, origin: str) -> None:
        """The next attempt on case-requests.retry; it carries the origin of the request it continues."""

    async def defer(self, message: Any) -> None:
        """A retry record not yet due back on case-requests.retry, unchanged."""


class CaseRequestOutputs:
    """The topics case creation writes to (faust TopicT, raw bytes) and the outcome journal."""

    def __init__(
        self, outcomes: Any, retry: Any, dlq: Any, case_events: Any, journal: OutcomeJournal
    ) -> None:
        self.outcomes = outcomes
        self.retry = retry
        self.dlq = dlq
        self.case_events = case_events
        self.journal = journal

    async def has_outcome(self, request_id: str, origin: str, partition: int) -> bool:
        return await self.journal.seen(request_id, origin, partition)

    async def terminal(
        self,
        partition: int,
        origin: str,
        outcome: CaseRequestOutcome,
        dead_letter: tuple[SourceRecord, DeadLetter] | None,
    ) -> bool:
        request_id = outcome.requestId
        if partition_for(request_id, self.journal.partitions) != partition:
            # Only an invalid record sits outside its requestId's partition; the journal keeps to the rule.
            if dead_letter is not None:
                await self.dead_letter(*dead_letter)
            await self.progress(outcome)
            return True
        if not await self.journal.claim(request_id, origin, partition):
            return False
        try:
            if dead_letter is not None:
                await self.dead_letter(*dead_letter)
        except BaseException:
            self.journal.unclaim(origin)
            raise
        await self.journal.publish(request_id, origin, outcome.model_dump_json().encode(), partition)
        return True

    async def progress(self, outcome: CaseRequestOutcome) -> None:
        sent = await self.outcomes.send(
            key=outcome.requestId.encode(), value=outcome.model_dump_json().encode()
        )
        await sent

    async def announce(self, case_id: str, request: CaseRequest, started: int) -> None:
        event = created_event(case_id, request, started)
        sent = await self.case_events.send(
            key=case_id.encode(), value=event.body, headers=event.headers(now_ms(), SOURCE_BRIDGE)
        )
        await sent

    async def schedule(self, retry: RetryCaseRequest, origin: str) -> None:
        sent = await self.retry.send(
            key=retry.requestId.encode(),
            value=retry.model_dump_json(exclude_unset=True).encode(),
            headers=[(ORIGIN_HEADER, origin.encode())],
        )
        await sent

    async def defer(self, message: Any) -> None:
        sent = await self.retry.send(
            key=message.key, value=message.value, headers=list(message.headers or ())
        )
        await sent

    async def dead_letter(self, source: SourceRecord, letter: DeadLetter) -> None:
        """The request, as published, on case-requests.dlq with what happened in its headers."""
        headers = dlq_headers(
            outcome=letter.kind.value, error=letter.error, error_code=letter.code,
            http_status=letter.http_status, topic=source.topic, partition=source.partition,
            offset=source.offset,
        )  # fmt: skip
        sent = await self.dlq.send(key=source.key, value=source.value, headers=headers)
        await sent


def created_event(case_id: str, request: CaseRequest, started: int) -> SynthesizedEvent:
    """The ``case.created`` event of a new case, so the state table (and the reconciler) know it from birth.

    Its timestamp is when the call started, never later than Offload's createdAt, so it can never
    overtake an update of the case.
    """
    data: dict[str, Any] = {"caseId": case_id}
    if request.clientReferenceId is not None:
        data["clientReferenceId"] = request.clientReferenceId
    data.update(status="CREATED", channel=request.channel, attemptCount=0, attachments=[])
    if request.metadata is not None:
        data["metadata"] = request.metadata
    return build_event(case_id, "case.created", started, data)
