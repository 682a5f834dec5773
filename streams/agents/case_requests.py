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
from typing import Any

from faust.web import Request, Response, View
from pydantic import ValidationError

from offload_bridge.topics import CASE_REQUEST_OUTCOMES, CASE_REQUESTS, CASE_REQUESTS_DLQ, topic_name
from schemas.answers import now_ms
from schemas.case_requests import (
    CaseRequest,
    CaseRequestOutcome,
    CaseRequestOutcomeKind,
    CaseRequestRecord,
    CaseRequestStatus,
)
from streams.answers.policy import backoff_s
from streams.app import StreamsApp
from streams.case_requests.policy import Decision, Judgement, judge
from streams.case_requests.storage import CaseRequestTable, add_case_request_table
from streams.offload_api import OffloadApi, OffloadUnreachable
from streams.reconcile.diff import SOURCE_BRIDGE, build_event

log = logging.getLogger(__name__)

CASE_REQUESTS_TABLE = "case_requests"
DURABLE_WRITE_TIMEOUT_S = 30.0
_FINISHED = {
    CaseRequestStatus.CREATED, CaseRequestStatus.REJECTED, CaseRequestStatus.DEAD_LETTERED,
    CaseRequestStatus.UNKNOWN,
}  # fmt: skip


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
        self.counts: dict[str, int] = {kind.value: 0 for kind in CaseRequestOutcomeKind}
        self.counts["failed"] = 0

    @property
    def api(self) -> OffloadApi:
        return self.streams.offload

    async def handle(self, message: Any) -> None:
        try:
            request = decode_request(message.key, message.value)
        except InvalidCaseRequest as error:
            request_id = _request_id_hint(message)
            log.warning("case-requests %s[%s]@%s rejected: %s", *_position(message), error)
            await self._dead_letter(message, CaseRequestOutcomeKind.REJECTED, str(error), "INVALID_REQUEST")
            await self._outcome(
                request_id, CaseRequestOutcomeKind.REJECTED, errorCode="INVALID_REQUEST", message=str(error)
            )
            return
        request_id = request.requestId
        known = self.table.get(request_id)
        if known is not None and known.status is CaseRequestStatus.PENDING:
            # The worker died while a call was in flight: Offload may or may not have the case.
            await self._finish(
                request_id, known, CaseRequestStatus.UNKNOWN, CaseRequestOutcomeKind.UNKNOWN,
                message=f"attempt {known.attempt} was in flight when the worker stopped; "
                "Offload may or may not have created the case",
            )  # fmt: skip
            return
        if known is not None and known.status in _FINISHED:
            text = f"requestId {request_id} was seen before and ended {known.status.value}"
            await self._outcome(
                request_id, CaseRequestOutcomeKind.DUPLICATE, caseId=known.caseId, message=text
            )
            return
        await self._create(message, request, known.attempt if known is not None else 0)

    async def _create(self, message: Any, request: CaseRequest, attempt: int) -> None:
        request_id = request.requestId
        body = request.offload_body()
        if "clientWebhookUrl" not in body and self.settings.offload_public_webhook_url is not None:
            body["clientWebhookUrl"] = str(self.settings.offload_public_webhook_url)
        max_attempts = self.settings.offload_case_request_max_attempts
        while True:
            attempt += 1
            pending = CaseRequestRecord(
                requestId=request_id, status=CaseRequestStatus.PENDING, attempt=attempt
            )
            await self.table.put_durably(request_id, pending, DURABLE_WRITE_TIMEOUT_S)
            started = now_ms()
            result: Any
            try:
                result = await self.api.create_case(body)
            except OffloadUnreachable as error:
                result = error
            verdict = judge(result)
            fields = _fields(verdict)
            if verdict.decision is Decision.CREATED:
                assert verdict.case_id is not None
                await self._finish(
                    request_id, pending, CaseRequestStatus.CREATED, CaseRequestOutcomeKind.CREATED, **fields
                )
                await self._announce(verdict.case_id, request, started)
                return
            if verdict.decision is Decision.UNKNOWN:
                await self._finish(
                    request_id, pending, CaseRequestStatus.UNKNOWN, CaseRequestOutcomeKind.UNKNOWN, **fields
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
            await self._finish(request_id, pending, status, kind, **fields)
            await self._dead_letter(
                message, kind, fields["message"], fields["errorCode"], fields["httpStatus"]
            )
            return

    async def _finish(
        self,
        request_id: str,
        record: CaseRequestRecord,
        status: CaseRequestStatus,
        kind: CaseRequestOutcomeKind,
        **fields: Any,
    ) -> None:
        ended = record.model_copy(update={"status": status, "at": now_ms(), **fields})
        await self.table.put_durably(request_id, ended, DURABLE_WRITE_TIMEOUT_S)
        await self._outcome(request_id, kind, **fields)

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
        outcome = CaseRequestOutcome(requestId=request_id, outcome=kind, **fields)
        self.counts[kind.value] += 1
        log.info("case request %s: %s %s", request_id, kind.value, outcome.caseId or outcome.message)
        sent = await self.outcomes.send(key=request_id.encode(), value=outcome.model_dump_json().encode())
        await sent

    async def _dead_letter(
        self,
        message: Any,
        kind: CaseRequestOutcomeKind,
        error: str,
        code: str | None,
        http_status: int | None = None,
    ) -> None:
        topic, partition, offset = _position(message)
        headers = {
            "outcome": kind.value,
            "error": error,
            "error_code": code or "",
            "http_status": "" if http_status is None else str(http_status),
            "original_topic": str(topic),
            "original_partition": str(partition),
            "original_offset": str(offset),
            "dead_lettered_at": str(now_ms()),
        }
        sent = await self.dlq.send(
            key=message.key, value=message.value, headers=[(k, v.encode()) for k, v in headers.items()]
        )
        await sent


def decode_request(key: bytes | None, value: bytes | None) -> CaseRequest:
    """The request a record carries. Raises InvalidCaseRequest."""
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
