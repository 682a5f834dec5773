"""The case-requests agent: turns each ``case-requests`` message into at most one ``POST /cases``.

Per requestId, a table remembers what happened. ``pending`` is written, and acknowledged by the broker,
before every call; a request found ``pending`` (the worker died during a call) is never sent again
blindly: its outcome is ``unknown`` and an operator decides. A request seen again after it ended gets
``duplicate`` with its caseId and no call. One actor per partition (isolated partitions) keeps a slow
or retried call from holding up the other partitions; every error is caught per message.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from faust.web import Request, Response, View
from pydantic import ValidationError

from offload_bridge.partitioning import partition_for
from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.case_requests import (
    CaseRequest,
    CaseRequestOutcome,
    CaseRequestOutcomeKind,
    CaseRequestRecord,
    CaseRequestStatus,
)
from offload_bridge.streams.answers.policy import backoff_s
from offload_bridge.streams.app import StreamsApp
from offload_bridge.streams.case_requests.policy import Decision, Judgement, judge
from offload_bridge.streams.case_requests.storage import CaseRequestTable, add_case_request_table
from offload_bridge.streams.journal import OutcomeJournal, origin_of
from offload_bridge.streams.offload_api import OffloadApi, OffloadUnreachable
from offload_bridge.streams.reconcile.diff import SOURCE_BRIDGE, build_event
from offload_bridge.topics import CASE_REQUEST_OUTCOMES, CASE_REQUESTS, CASE_REQUESTS_DLQ, topic_name

log = logging.getLogger(__name__)

CASE_REQUESTS_TABLE = "case_requests"
CASE_REQUEST_JOURNAL_TABLE = "case_request_journal"
DURABLE_WRITE_TIMEOUT_S = 30.0
_FINISHED = {
    CaseRequestStatus.CREATED, CaseRequestStatus.REJECTED, CaseRequestStatus.DEAD_LETTERED,
    CaseRequestStatus.UNKNOWN,
}  # fmt: skip


@dataclass(frozen=True)
class _DeadLetter:
    """What the copy on case-requests.dlq says in its headers."""

    kind: CaseRequestOutcomeKind
    error: str
    code: str | None
    http_status: int | None = None


class InvalidCaseRequest(ValueError):
    """Not a case request; the message says why in one line."""


class CaseRequestAgent:
    def __init__(self, streams: StreamsApp) -> None:
        self.streams = streams
        self.settings = settings = streams.settings
        app, partitions = streams.app, settings.offload_topic_partitions
        raw: dict[str, Any] = {
            "key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"
        }  # fmt: skip
        self.requests = app.topic(topic_name(CASE_REQUESTS, settings), partitions=partitions, **raw)
        self.outcomes = app.topic(topic_name(CASE_REQUEST_OUTCOMES, settings), partitions=partitions, **raw)
        self.dlq = app.topic(topic_name(CASE_REQUESTS_DLQ, settings), partitions=partitions, **raw)
        # Partitions equal case-requests': each request is remembered in the partition it came from.
        self.table: CaseRequestTable = add_case_request_table(
            app, CASE_REQUESTS_TABLE, partitions, help="CaseRequestRecord per requestId"
        )
        self.journal = OutcomeJournal(
            app, settings, CASE_REQUEST_JOURNAL_TABLE, self.outcomes,
            help="per requestId, the request records that have their terminal outcome",
        )  # fmt: skip
        self.counts: dict[str, int] = {kind.value: 0 for kind in CaseRequestOutcomeKind}
        self.counts["failed"] = 0
        self.counts["redelivered"] = 0

    @property
    def api(self) -> OffloadApi:
        return self.streams.offload

    async def handle(self, message: Any) -> None:
        origin = origin_of(message)
        try:
            request = decode_request(message.key, message.value, message.partition, self.journal.partitions)
        except InvalidCaseRequest as error:
            request_id = _request_id_hint(message)
            log.warning("case-requests %s[%s]@%s rejected: %s", *_position(message), error)
            dead_letter = _DeadLetter(CaseRequestOutcomeKind.REJECTED, str(error), "INVALID_REQUEST")
            await self._terminal(
                message, request_id, CaseRequestOutcomeKind.REJECTED, dead_letter,
                errorCode="INVALID_REQUEST", message=str(error),
            )  # fmt: skip
            return
        request_id = request.requestId
        if await self._already_done(message, request_id, origin):
            return
        known = self.table.get(request_id)
        if known is not None and known.status is CaseRequestStatus.PENDING:
            # The worker died while a call was in flight: Offload may or may not have the case.
            await self._finish(
                message, known, CaseRequestStatus.UNKNOWN, CaseRequestOutcomeKind.UNKNOWN,
                message=f"attempt {known.attempt} was in flight when the worker stopped; "
                "Offload may or may not have created the case",
            )  # fmt: skip
            return
        if known is not None and known.status in _FINISHED and known.origin == origin:
            # This very record ended before a crash, its outcome not yet out: publish that outcome.
            await self._republish(message, request, known)
            return
        if known is not None and known.status in _FINISHED:
            text = f"requestId {request_id} was seen before and ended {known.status.value}"
            await self._terminal(
                message, request_id, CaseRequestOutcomeKind.DUPLICATE, None, caseId=known.caseId, message=text
            )
            return
        await self._create(message, request, known.attempt if known is not None else 0)

    async def _already_done(self, message: Any, request_id: str, origin: str) -> bool:
        done = await self.journal.seen(request_id, origin, int(message.partition))
        if done:
            # Handled before a crash, its offset not committed yet: the outcome is out, nothing to do.
            self.counts["redelivered"] += 1
            log.info("case request %s (%s): already has its outcome", request_id, origin)
        return done

    async def _republish(self, message: Any, request: CaseRequest, known: CaseRequestRecord) -> None:
        kind = CaseRequestOutcomeKind(known.status.value)
        fields = {
            "caseId": known.caseId, "httpStatus": known.httpStatus, "errorCode": known.errorCode,
            "message": known.message,
        }  # fmt: skip
        dead_letter = None
        if kind in (CaseRequestOutcomeKind.REJECTED, CaseRequestOutcomeKind.DEAD_LETTERED):
            dead_letter = _DeadLetter(kind, known.message, known.errorCode, known.httpStatus)
        if kind is CaseRequestOutcomeKind.CREATED and known.caseId is not None:
            # The event may be out already; its event_id is the same, so the fold drops the copy.
            await self._announce(known.caseId, request, known.at)
        await self._terminal(message, request.requestId, kind, dead_letter, **fields)

    async def _create(self, message: Any, request: CaseRequest, attempt: int) -> None:
        request_id = request.requestId
        body = request.offload_body()
        if "clientWebhookUrl" not in body and self.settings.offload_public_webhook_url is not None:
            body["clientWebhookUrl"] = str(self.settings.offload_public_webhook_url)
        max_attempts = self.settings.offload_case_request_max_attempts
        while True:
            attempt += 1
            pending = CaseRequestRecord(
                requestId=request_id, status=CaseRequestStatus.PENDING, attempt=attempt,
                origin=origin_of(message), at=now_ms(),
            )  # fmt: skip
            await self.table.put_durably(request_id, pending, DURABLE_WRITE_TIMEOUT_S)
            started = pending.at
            result: Any
            try:
                result = await self.api.create_case(body)
            except OffloadUnreachable as error:
                result = error
            verdict = judge(result)
            fields = _fields(verdict)
            if verdict.decision is Decision.CREATED:
                assert verdict.case_id is not None
                await self._end(request_id, pending, CaseRequestStatus.CREATED, **fields)
                # Announced before the outcome: whoever sees ``created`` finds the case in case-events.
                # ``at`` of the record is when the call started, never later than Offload's createdAt.
                await self._announce(verdict.case_id, request, started)
                await self._terminal(message, request_id, CaseRequestOutcomeKind.CREATED, None, **fields)
                return
            if verdict.decision is Decision.UNKNOWN:
                await self._finish(
                    message, pending, CaseRequestStatus.UNKNOWN, CaseRequestOutcomeKind.UNKNOWN, **fields
                )
                return
            if verdict.decision is Decision.RETRY and attempt < max_attempts:
                retrying = pending.model_copy(update={"status": CaseRequestStatus.RETRYING, **fields})
                await self.table.put_durably(request_id, retrying, DURABLE_WRITE_TIMEOUT_S)
                await self._outcome(request_id, CaseRequestOutcomeKind.RETRYING, **fields)
                settings = self.settings
                await asyncio.sleep(
                    backoff_s(attempt, settings.offload_retry_base_s, settings.offload_retry_max_s,
                              verdict.retry_after_s)
                )  # fmt: skip
                continue
            kind = CaseRequestOutcomeKind.REJECTED
            status = CaseRequestStatus.REJECTED
            if verdict.decision is not Decision.REJECTED:
                kind, status = CaseRequestOutcomeKind.DEAD_LETTERED, CaseRequestStatus.DEAD_LETTERED
                fields["message"] = f"after {attempt} attempt(s): {fields['message']}".rstrip(": ")
            dead_letter = _DeadLetter(kind, fields["message"], fields["errorCode"], fields["httpStatus"])
            await self._finish(message, pending, status, kind, dead_letter, **fields)
            return

    async def _finish(
        self,
        source: Any,
        record: CaseRequestRecord,
        status: CaseRequestStatus,
        kind: CaseRequestOutcomeKind,
        dead_letter: _DeadLetter | None = None,
        **fields: Any,
    ) -> None:
        """Record how the request ended, then publish its one terminal outcome."""
        await self._end(record.requestId, record, status, **fields)
        await self._terminal(source, record.requestId, kind, dead_letter, **fields)

    async def _end(
        self, request_id: str, record: CaseRequestRecord, status: CaseRequestStatus, **fields: Any
    ) -> CaseRequestRecord:
        """The request's end in the table (with the origin of this record), on the broker before the
        outcome: after a crash in between, the same record republishes that outcome."""
        update = {"status": status, **fields}
        if status is not CaseRequestStatus.CREATED:
            update["at"] = now_ms()
        ended = record.model_copy(update=update)
        await self.table.put_durably(request_id, ended, DURABLE_WRITE_TIMEOUT_S)
        return ended

    async def _terminal(
        self,
        source: Any,
        request_id: str,
        kind: CaseRequestOutcomeKind,
        dead_letter: _DeadLetter | None,
        **fields: Any,
    ) -> None:
        """The one terminal outcome of the record (and its dead letter), unless it has one already."""
        origin = origin_of(source)
        partition = int(source.partition)
        outcome = CaseRequestOutcome(requestId=request_id, outcome=kind, **fields)
        if partition_for(request_id, self.journal.partitions) != partition:
            # Only an invalid record sits outside its requestId's partition; the journal keeps to the rule.
            if dead_letter is not None:
                await self._dead_letter(source, dead_letter)
            await self._outcome(request_id, kind, **fields)
            return
        async with self.journal.exclusive(partition):
            if self.journal.done(request_id, origin):
                self.counts["redelivered"] += 1
                return
            if dead_letter is not None:
                await self._dead_letter(source, dead_letter)
            self._note(outcome)
            await self.journal.publish(request_id, origin, outcome.model_dump_json().encode(), partition)

    async def _announce(self, case_id: str, request: CaseRequest, started: int) -> None:
        """A ``case.created`` event, so the state table (and the reconciler) know the case from birth.

        Its timestamp is when the call started, never later than Offload's createdAt, so it can never
        overtake an update of the case.
        """
        data: dict[str, Any] = {"caseId": case_id}
        if request.clientReferenceId is not None:
            data["clientReferenceId"] = request.clientReferenceId
        data.update(status="CREATED", channel=request.channel, attemptCount=0, attachments=[])
        if request.metadata is not None:
            data["metadata"] = request.metadata
        event = build_event(case_id, "case.created", started, data)
        sent = await self.streams.case_events.send(
            key=case_id.encode(), value=event.body, headers=event.headers(now_ms(), SOURCE_BRIDGE)
        )
        await sent

    async def _outcome(self, request_id: str, kind: CaseRequestOutcomeKind, **fields: Any) -> None:
        """An outcome outside the journal (``retrying``)."""
        outcome = CaseRequestOutcome(requestId=request_id, outcome=kind, **fields)
        self._note(outcome)
        sent = await self.outcomes.send(key=request_id.encode(), value=outcome.model_dump_json().encode())
        await sent

    def _note(self, outcome: CaseRequestOutcome) -> None:
        self.counts[outcome.outcome.value] += 1
        log.info(
            "case request %s: %s %s",
            outcome.requestId,
            outcome.outcome.value,
            outcome.caseId or outcome.message,
        )

    async def _dead_letter(self, message: Any, letter: _DeadLetter) -> None:
        topic, partition, offset = _position(message)
        headers = {
            "outcome": letter.kind.value,
            "error": letter.error,
            "error_code": letter.code or "",
            "http_status": "" if letter.http_status is None else str(letter.http_status),
            "original_topic": str(topic),
            "original_partition": str(partition),
            "original_offset": str(offset),
            "dead_lettered_at": str(now_ms()),
        }
        sent = await self.dlq.send(
            key=message.key, value=message.value, headers=[(k, v.encode()) for k, v in headers.items()]
        )
        await sent


def decode_request(
    key: bytes | None, value: bytes | None, partition: int | None = None, partitions: int | None = None
) -> CaseRequest:
    """The request a record carries. Raises InvalidCaseRequest.

    With ``partition`` and ``partitions``, the record must sit where Kafka's default partitioner puts
    its requestId: elsewhere another worker could hold the request's history.
    """
    if value is None:
        raise InvalidCaseRequest("record has no value")
    try:
        request = CaseRequest.model_validate_json(value)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidCaseRequest(
            f"schema: {where}: {first['msg']} ({error.error_count()} error(s))"
        ) from None
    if key != request.requestId.encode():
        shown = key.decode(errors="replace") if key is not None else None
        raise InvalidCaseRequest(f"record key {shown!r} is not the requestId {request.requestId!r}")
    if partition is not None and partitions is not None:
        expected = partition_for(request.requestId, partitions)
        if expected != partition:
            raise InvalidCaseRequest(
                f"record in partition {partition}, but Kafka's default partitioner puts requestId "
                f"{request.requestId!r} in partition {expected}: produce with Kafka's default (murmur2) "
                "partitioner (librdkafka: partitioner=murmur2_random)"
            )
    return request


def _fields(verdict: Judgement) -> dict[str, Any]:
    return {
        "caseId": verdict.case_id,
        "httpStatus": verdict.http_status,
        "errorCode": verdict.error_code,
        "message": verdict.message,
    }


def _request_id_hint(message: Any) -> str:
    key = message.key
    return key.decode(errors="replace") if key else f"{message.topic}:{message.partition}:{message.offset}"


def _position(message: Any) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset


def register(streams: StreamsApp) -> CaseRequestAgent:
    agent = CaseRequestAgent(streams)

    @streams.app.agent(agent.requests, name="case-requests", concurrency=1, isolated_partitions=True)
    async def create_cases(stream: Any) -> None:
        async for event in stream.events():
            try:
                await agent.handle(event.message)
            except Exception:
                agent.counts["failed"] += 1
                log.exception("case-requests %s[%s]@%s: failed, skipped", *_position(event.message))

    @streams.app.page("/stats/case-requests")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "data": agent.counts})

    return agent
