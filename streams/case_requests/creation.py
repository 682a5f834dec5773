"""Turn each case request into at most one ``POST /cases``, and give its record one terminal outcome.

Per requestId, a table remembers what happened. ``pending`` is written, and acknowledged by the broker,
before every call; a request found ``pending`` (the worker died during a call) is never sent again
blindly: its outcome is ``unknown`` and an operator decides. A request seen again after it ended gets
``duplicate`` with its caseId and no call. What a reply means is ``policy``'s; where things are written,
``outputs``'.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.case_requests import (
    CaseRequest,
    CaseRequestOutcome,
    CaseRequestOutcomeKind,
    CaseRequestRecord,
    CaseRequestStatus,
)
from offload_bridge.settings import Settings
from offload_bridge.streams.answers.policy import backoff_s
from offload_bridge.streams.case_requests.outputs import CaseRequestSink, DeadLetter
from offload_bridge.streams.case_requests.policy import Decision, Judgement, judge
from offload_bridge.streams.case_requests.records import InvalidCaseRequest, decode_request
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.journal import origin_of
from offload_bridge.streams.offload_api import OffloadApi, OffloadUnreachable

log = logging.getLogger("offload_bridge.streams.case_requests")

DURABLE_WRITE_TIMEOUT_S = 30.0
# Counted besides the outcomes by kind.
CASE_REQUEST_CALLS = (
    "failed",  # unexpected errors, each logged
    "redelivered",  # records seen again after a crash whose outcome was already published
)
_FINISHED = {
    CaseRequestStatus.CREATED, CaseRequestStatus.REJECTED, CaseRequestStatus.DEAD_LETTERED,
    CaseRequestStatus.UNKNOWN,
}  # fmt: skip


class CaseCreation:
    """The case-request logic over a table of CaseRequestRecord by requestId (``get``, ``put_durably``)."""

    def __init__(self, settings: Settings, table: Any, api: OffloadApi, out: CaseRequestSink) -> None:
        self.settings = settings
        self.partitions = settings.offload_topic_partitions
        self.table = table
        self.api = api
        self.out = out
        self.counts = Counters([*(kind.value for kind in CaseRequestOutcomeKind), *CASE_REQUEST_CALLS])

    async def on_request(self, message: Any) -> None:
        origin = origin_of(message)
        try:
            request = decode_request(message.key, message.value, message.partition, self.partitions)
        except InvalidCaseRequest as error:
            request_id = _request_id_hint(message)
            log.warning("case-requests %s[%s]@%s rejected: %s", *_position(message), error)
            dead_letter = DeadLetter(CaseRequestOutcomeKind.REJECTED, str(error), "INVALID_REQUEST")
            await self._terminal(
                message, origin, request_id, CaseRequestOutcomeKind.REJECTED, dead_letter,
                errorCode="INVALID_REQUEST", message=str(error),
            )  # fmt: skip
            return
        request_id = request.requestId
        if await self._already_done(message, request_id, origin):
            return
        known: CaseRequestRecord | None = self.table.get(request_id)
        if known is not None and known.status is CaseRequestStatus.PENDING:
            # The worker died while a call was in flight: Offload may or may not have the case.
            await self._finish(
                message, origin, known, CaseRequestStatus.UNKNOWN, CaseRequestOutcomeKind.UNKNOWN,
                message=f"attempt {known.attempt} was in flight when the worker stopped; "
                "Offload may or may not have created the case",
            )  # fmt: skip
            return
        if known is not None and known.status in _FINISHED and known.origin == origin:
            # This very record ended before a crash, its outcome not yet out: publish that outcome.
            await self._republish(message, origin, request, known)
            return
        if known is not None and known.status in _FINISHED:
            text = f"requestId {request_id} was seen before and ended {known.status.value}"
            await self._terminal(
                message, origin, request_id, CaseRequestOutcomeKind.DUPLICATE, None,
                caseId=known.caseId, message=text,
            )  # fmt: skip
            return
        await self._create(message, origin, request, known.attempt if known is not None else 0)

    async def _already_done(self, message: Any, request_id: str, origin: str) -> bool:
        done = await self.out.has_outcome(request_id, origin, int(message.partition))
        if done:
            # Handled before a crash, its offset not committed yet: the outcome is out, nothing to do.
            self.counts.inc("redelivered")
            log.info("case request %s (%s): already has its outcome", request_id, origin)
        return done

    async def _republish(
        self, message: Any, origin: str, request: CaseRequest, known: CaseRequestRecord
    ) -> None:
        kind = CaseRequestOutcomeKind(known.status.value)
        fields = {
            "caseId": known.caseId, "httpStatus": known.httpStatus, "errorCode": known.errorCode,
            "message": known.message,
        }  # fmt: skip
        dead_letter = None
        if kind in (CaseRequestOutcomeKind.REJECTED, CaseRequestOutcomeKind.DEAD_LETTERED):
            dead_letter = DeadLetter(kind, known.message, known.errorCode, known.httpStatus)
        if kind is CaseRequestOutcomeKind.CREATED and known.caseId is not None:
            # The event may be out already; its event_id is the same, so the fold drops the copy.
            await self.out.announce(known.caseId, request, known.at)
        await self._terminal(message, origin, request.requestId, kind, dead_letter, **fields)

    async def _create(self, message: Any, origin: str, request: CaseRequest, attempt: int) -> None:
        request_id = request.requestId
        body = request.offload_body()
        if "clientWebhookUrl" not in body and self.settings.offload_public_webhook_url is not None:
            body["clientWebhookUrl"] = str(self.settings.offload_public_webhook_url)
        max_attempts = self.settings.offload_case_request_max_attempts
        while True:
            attempt += 1
            pending = CaseRequestRecord(
                requestId=request_id, status=CaseRequestStatus.PENDING, attempt=attempt,
                origin=origin, at=now_ms(),
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
                await self.out.announce(verdict.case_id, request, started)
                await self._terminal(
                    message, origin, request_id, CaseRequestOutcomeKind.CREATED, None, **fields
                )
                return
            if verdict.decision is Decision.UNKNOWN:
                await self._finish(
                    message, origin, pending, CaseRequestStatus.UNKNOWN, CaseRequestOutcomeKind.UNKNOWN,
                    **fields,
                )  # fmt: skip
                return
            if verdict.decision is Decision.RETRY and attempt < max_attempts:
                retrying = pending.model_copy(update={"status": CaseRequestStatus.RETRYING, **fields})
                await self.table.put_durably(request_id, retrying, DURABLE_WRITE_TIMEOUT_S)
                await self._progress(request_id, CaseRequestOutcomeKind.RETRYING, **fields)
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
            dead_letter = DeadLetter(kind, fields["message"], fields["errorCode"], fields["httpStatus"])
            await self._finish(message, origin, pending, status, kind, dead_letter, **fields)
            return

    async def _finish(
        self,
        source: Any,
        origin: str,
        record: CaseRequestRecord,
        status: CaseRequestStatus,
        kind: CaseRequestOutcomeKind,
        dead_letter: DeadLetter | None = None,
        **fields: Any,
    ) -> None:
        """Record how the request ended, then publish its one terminal outcome."""
        await self._end(record.requestId, record, status, **fields)
        await self._terminal(source, origin, record.requestId, kind, dead_letter, **fields)

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
        origin: str,
        request_id: str,
        kind: CaseRequestOutcomeKind,
        dead_letter: DeadLetter | None,
        **fields: Any,
    ) -> None:
        """The one terminal outcome of the record (and its dead letter), unless it has one already."""
        outcome = CaseRequestOutcome(requestId=request_id, outcome=kind, **fields)
        if await self.out.terminal(source, origin, outcome, dead_letter):
            self._note(outcome)
        else:
            self.counts.inc("redelivered")

    async def _progress(self, request_id: str, kind: CaseRequestOutcomeKind, **fields: Any) -> None:
        """An outcome outside the journal (``retrying``)."""
        outcome = CaseRequestOutcome(requestId=request_id, outcome=kind, **fields)
        self._note(outcome)
        await self.out.progress(outcome)

    def _note(self, outcome: CaseRequestOutcome) -> None:
        self.counts.inc(outcome.outcome.value)
        log.info(
            "case request %s: %s %s",
            outcome.requestId,
            outcome.outcome.value,
            outcome.caseId or outcome.message,
        )


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
