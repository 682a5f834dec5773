"""Turn each case request into at most one ``POST /cases``, and give its record one terminal outcome.

Per requestId, a table remembers what happened. ``pending`` is written, and acknowledged by the broker,
before every call; a request found ``pending`` (the worker died during a call) is never sent again
blindly: its outcome is ``unknown``, the request goes to ``case-requests.dlq`` with its context, and an
operator decides. A request seen again after it ended gets ``duplicate`` with its caseId and no call.

Except a redrive: a record with the header ``redriven_from`` (written by ``offload-bridge dlq redrive``)
whose request ended without a case we know of (``dead_lettered``, ``rejected``, ``unknown``) gets a fresh
attempt, its attempts counted from 1 again under its own origin. Offload refused a ``rejected`` request,
so it has no case of it: the new call may be accepted now (the monthly cap lifted, Offload's validation
changed) and is otherwise refused again, harmlessly. A ``dead_lettered`` request's calls were refused or
failed; those that failed with a 5xx or a timeout carry the same risk as their retries (``policy``), no
more. ``unknown`` is redriven only with ``--force``: the operator checked that Offload has no case. A
request that ended ``created`` stays ``duplicate`` with its caseId however it comes back, so no case we
know of is created twice.

A call the policy retries is not waited for in the partition: the request goes to ``case-requests.retry``
with its next attempt and when it is due (``streams.retry``), and the record there continues the
``case-requests`` record it came from (header ``origin``), which gets the one terminal outcome. The table
says which attempt is next, so a retry record seen again after a crash, or superseded, makes no call.
The agents on both topics share their lanes (``streams.lanes``): one record of a requestId at a time
touches its table entry, while the records of other requests are in flight.

What a reply means is ``policy``'s; where things are written, ``outputs``'.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.case_requests import (
    CaseRequest,
    CaseRequestOutcome,
    CaseRequestOutcomeKind,
    CaseRequestRecord,
    CaseRequestStatus,
    RetryCaseRequest,
)
from offload_bridge.schemas.headers import ORIGIN_HEADER, REDRIVEN_FROM_HEADER
from offload_bridge.schemas.validation import dotted
from offload_bridge.settings import Settings
from offload_bridge.streams.case_requests.outputs import CaseRequestSink, DeadLetter, SourceRecord
from offload_bridge.streams.case_requests.policy import CaseRequestDecision, DecidedReply, decide_case_request
from offload_bridge.streams.case_requests.records import InvalidCaseRequest, decode_request
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.journal import header, origin_of
from offload_bridge.streams.messages import position
from offload_bridge.streams.offload_api import OffloadApi, OffloadUnreachable
from offload_bridge.streams.retry import backoff_s, wait_until_due

log = logging.getLogger("offload_bridge.streams.case_requests")

DURABLE_WRITE_TIMEOUT_S = 30.0
# Counted besides the outcomes by kind.
CASE_REQUEST_CALLS = (
    "failed",  # unexpected errors, each logged
    "redelivered",  # records seen again after a crash whose outcome was already published
    "deferred",  # retry records not yet due, put back on case-requests.retry
)
# Every terminal outcome but created and duplicate copies the request to case-requests.dlq, unknown too:
# the DLQ is where an operator finds every request that needs a decision.
_DEAD_LETTERED_OUTCOMES = {
    CaseRequestOutcomeKind.REJECTED, CaseRequestOutcomeKind.DEAD_LETTERED, CaseRequestOutcomeKind.UNKNOWN,
}  # fmt: skip
_FINISHED = {
    CaseRequestStatus.CREATED, CaseRequestStatus.REJECTED, CaseRequestStatus.DEAD_LETTERED,
    CaseRequestStatus.UNKNOWN,
}  # fmt: skip
# A redriven record of a request that ended so gets a fresh attempt: none of them left a case we know of
# (the module's notes say why each is safe to send again).
_REDRIVABLE = {CaseRequestStatus.REJECTED, CaseRequestStatus.DEAD_LETTERED, CaseRequestStatus.UNKNOWN}
INVALID_REQUEST = "INVALID_REQUEST"


class CaseCreation:
    """The case-request logic over a table of CaseRequestRecord by requestId (``get``, ``put_durably``)."""

    def __init__(self, settings: Settings, table: Any, api: OffloadApi, out: CaseRequestSink) -> None:
        self.settings = settings
        self.partitions = settings.offload_topic_partitions
        self.table = table
        self.api = api
        self.out = out
        self.counts = Counters([*(kind.value for kind in CaseRequestOutcomeKind), *CASE_REQUEST_CALLS])

    # --- entry points, one per record ----------------------------------------------------------------

    async def on_request(self, message: Any) -> None:
        """A record of ``case-requests``."""
        origin = origin_of(message)
        partition = int(message.partition)
        try:
            request = decode_request(message.key, message.value, partition, self.partitions)
        except InvalidCaseRequest as error:
            await self._reject_invalid(message, origin, str(error))
            return
        await self._on_request(message, origin, request)

    async def on_retry(self, message: Any) -> None:
        """A record of ``case-requests.retry``: the next attempt of the request at its ``origin``."""
        origin = header(message, ORIGIN_HEADER) or origin_of(message)
        try:
            retry = decode_retry(message, self.partitions)
        except InvalidCaseRequest as error:
            await self._reject_invalid(message, origin, str(error))
            return
        if not await wait_until_due(retry.notBefore, message.timestamp):
            self.counts.inc("deferred")
            await self.out.defer(message)
            return
        await self._on_retry(message, origin, retry)

    # --- what a record means, given the table --------------------------------------------------------

    async def _on_request(self, message: Any, origin: str, request: CaseRequest) -> None:
        request_id = request.requestId
        partition = int(message.partition)
        if await self._already_done(partition, request_id, origin):
            return
        source = SourceRecord.of(message)
        known: CaseRequestRecord | None = self.table.get(request_id)
        if known is not None and known.status is CaseRequestStatus.PENDING:
            # The worker died while a call was in flight: Offload may or may not have the case.
            await self._in_flight_at_crash(partition, origin, source, known)
            return
        if known is not None and known.origin == origin and known.status is CaseRequestStatus.RETRYING:
            # This very record scheduled a retry before a crash; the retry may be lost: schedule it again
            # (a second copy finds the table moved on and makes no call).
            await self._schedule(request, origin, known.attempt, 0.0)
            return
        if known is not None and known.origin == origin and known.status in _FINISHED:
            # This very record ended before a crash, its outcome not yet out: publish that outcome.
            await self._republish(partition, origin, source, request, known)
            return
        if (
            known is not None
            and known.status in _REDRIVABLE
            and header(message, REDRIVEN_FROM_HEADER) is not None
        ):
            # Redriven on purpose from the DLQ: a new record, a new first attempt (see the module's notes).
            log.info(
                "case request %s (%s): redriven from %s after it ended %s; attempting it again",
                request_id, origin, header(message, REDRIVEN_FROM_HEADER), known.status.value,
            )  # fmt: skip
            await self._attempt(partition, origin, source, request, 1)
            return
        if known is not None and known.status is CaseRequestStatus.RETRYING:
            # Another record of the requestId is being retried: at most one creation per requestId.
            text = f"requestId {request_id} is being created by another record (attempt {known.attempt})"
            await self._terminal(
                partition, origin, request_id, CaseRequestOutcomeKind.DUPLICATE, None, message=text
            )
            return
        if known is not None and known.status in _FINISHED:
            text = f"requestId {request_id} was seen before and ended {known.status.value}"
            await self._terminal(
                partition, origin, request_id, CaseRequestOutcomeKind.DUPLICATE, None,
                caseId=known.caseId, message=text,
            )  # fmt: skip
            return
        await self._attempt(partition, origin, source, request, 1)

    async def _on_retry(self, message: Any, origin: str, retry: RetryCaseRequest) -> None:
        request = retry.request()
        request_id = request.requestId
        partition = int(message.partition)
        if await self._already_done(partition, request_id, origin):
            return
        source = SourceRecord.at_origin(origin, request)
        known: CaseRequestRecord | None = self.table.get(request_id)
        if known is None or known.origin != origin:
            self._stale(retry, origin, "the request's entry belongs to another record")
        elif known.status is CaseRequestStatus.PENDING and known.attempt == retry.attempt:
            # A copy of this retry was in flight when the worker stopped.
            await self._in_flight_at_crash(partition, origin, source, known)
        elif known.status in _FINISHED:
            await self._republish(partition, origin, source, request, known)
        elif known.status is CaseRequestStatus.RETRYING and known.attempt == retry.attempt - 1:
            await self._attempt(partition, origin, source, request, retry.attempt)
        else:
            self._stale(retry, origin, f"the request is {known.status.value} at attempt {known.attempt}")

    async def _already_done(self, partition: int, request_id: str, origin: str) -> bool:
        done = await self.out.has_outcome(request_id, origin, partition)
        if done:
            # Handled before a crash, its offset not committed yet: the outcome is out, nothing to do.
            self.counts.inc("redelivered")
            log.info("case request %s (%s): already has its outcome", request_id, origin)
        return done

    def _stale(self, retry: RetryCaseRequest, origin: str, why: str) -> None:
        """A retry record seen again after a crash, or scheduled twice: its attempt was made already."""
        self.counts.inc("redelivered")
        log.info("case request %s (%s): retry %d skipped: %s", retry.requestId, origin, retry.attempt, why)

    async def _in_flight_at_crash(
        self, partition: int, origin: str, source: SourceRecord, known: CaseRequestRecord
    ) -> None:
        text = (
            f"attempt {known.attempt} was in flight when the worker stopped; "
            "Offload may or may not have created the case"
        )
        letter = DeadLetter(CaseRequestOutcomeKind.UNKNOWN, text, None)
        await self._finish(
            partition, origin, known, CaseRequestStatus.UNKNOWN, CaseRequestOutcomeKind.UNKNOWN,
            (source, letter), message=text,
        )  # fmt: skip

    async def _republish(
        self,
        partition: int,
        origin: str,
        source: SourceRecord,
        request: CaseRequest,
        known: CaseRequestRecord,
    ) -> None:
        kind = CaseRequestOutcomeKind(known.status.value)
        fields = {
            "caseId": known.caseId, "httpStatus": known.httpStatus, "errorCode": known.errorCode,
            "message": known.message,
        }  # fmt: skip
        dead_letter = None
        if kind in _DEAD_LETTERED_OUTCOMES:
            dead_letter = (source, DeadLetter(kind, known.message, known.errorCode, known.httpStatus))
        if kind is CaseRequestOutcomeKind.CREATED and known.caseId is not None:
            # The event may be out already; its event_id is the same, so the fold drops the copy.
            await self.out.announce(known.caseId, request, known.at)
        await self._terminal(partition, origin, request.requestId, kind, dead_letter, **fields)

    # --- one attempt ---------------------------------------------------------------------------------

    async def _attempt(
        self, partition: int, origin: str, source: SourceRecord, request: CaseRequest, attempt: int
    ) -> None:
        """Make call ``attempt`` of the request and act on what Offload said."""
        request_id = request.requestId
        body = request.offload_body()
        if "clientWebhookUrl" not in body and self.settings.offload_public_webhook_url is not None:
            body["clientWebhookUrl"] = str(self.settings.offload_public_webhook_url)
        pending = CaseRequestRecord(
            requestId=request_id, status=CaseRequestStatus.PENDING, attempt=attempt, origin=origin,
            at=now_ms(),
        )  # fmt: skip
        await self.table.put_durably(request_id, pending, DURABLE_WRITE_TIMEOUT_S)
        started = pending.at
        result: Any
        try:
            result = await self.api.create_case(body)
        except OffloadUnreachable as error:
            result = error
        decided = decide_case_request(result)
        fields = _fields(decided)
        if decided.decision is CaseRequestDecision.CREATED:
            assert decided.case_id is not None
            await self._end(request_id, pending, CaseRequestStatus.CREATED, **fields)
            # Announced before the outcome: whoever sees ``created`` finds the case in case-events.
            # ``at`` of the record is when the call started, never later than Offload's createdAt.
            await self.out.announce(decided.case_id, request, started)
            await self._terminal(
                partition, origin, request_id, CaseRequestOutcomeKind.CREATED, None, **fields
            )
            return
        if decided.decision is CaseRequestDecision.UNKNOWN:
            letter = DeadLetter(
                CaseRequestOutcomeKind.UNKNOWN, fields["message"], fields["errorCode"], fields["httpStatus"]
            )
            await self._finish(
                partition, origin, pending, CaseRequestStatus.UNKNOWN, CaseRequestOutcomeKind.UNKNOWN,
                (source, letter), **fields,
            )  # fmt: skip
            return
        settings = self.settings
        if (
            decided.decision is CaseRequestDecision.RETRY
            and attempt < settings.offload_case_request_max_attempts
        ):
            retrying = pending.model_copy(update={"status": CaseRequestStatus.RETRYING, **fields})
            await self.table.put_durably(request_id, retrying, DURABLE_WRITE_TIMEOUT_S)
            delay = backoff_s(
                attempt, settings.offload_retry_base_s, settings.offload_retry_max_s, decided.retry_after_s
            )
            await self._schedule(request, origin, attempt, delay)
            await self._progress(request_id, CaseRequestOutcomeKind.RETRYING, **fields)
            return
        kind = CaseRequestOutcomeKind.REJECTED
        status = CaseRequestStatus.REJECTED
        if decided.decision is not CaseRequestDecision.REJECTED:
            kind, status = CaseRequestOutcomeKind.DEAD_LETTERED, CaseRequestStatus.DEAD_LETTERED
            fields["message"] = f"after {attempt} attempt(s): {fields['message']}".rstrip(": ")
        letter = DeadLetter(kind, fields["message"], fields["errorCode"], fields["httpStatus"])
        await self._finish(partition, origin, pending, status, kind, (source, letter), **fields)

    async def _schedule(self, request: CaseRequest, origin: str, attempt: int, delay_s: float) -> None:
        """Attempt ``attempt + 1`` on case-requests.retry, due in ``delay_s``."""
        fields = request.model_dump(mode="json", exclude_unset=True)
        retry = RetryCaseRequest(**fields, attempt=attempt + 1, notBefore=now_ms() + int(delay_s * 1000))
        await self.out.schedule(retry, origin)

    # --- outcomes ------------------------------------------------------------------------------------

    async def _reject_invalid(self, message: Any, origin: str, reason: str) -> None:
        log.warning("%s[%s]@%s rejected: %s", *position(message), reason)
        letter = DeadLetter(CaseRequestOutcomeKind.REJECTED, reason, INVALID_REQUEST)
        await self._terminal(
            int(message.partition), origin, _request_id_hint(message), CaseRequestOutcomeKind.REJECTED,
            (SourceRecord.of(message), letter), errorCode=INVALID_REQUEST, message=reason,
        )  # fmt: skip

    async def _finish(
        self,
        partition: int,
        origin: str,
        record: CaseRequestRecord,
        status: CaseRequestStatus,
        kind: CaseRequestOutcomeKind,
        dead_letter: tuple[SourceRecord, DeadLetter] | None = None,
        **fields: Any,
    ) -> None:
        """Record how the request ended, then publish its one terminal outcome."""
        await self._end(record.requestId, record, status, **fields)
        await self._terminal(partition, origin, record.requestId, kind, dead_letter, **fields)

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
        partition: int,
        origin: str,
        request_id: str,
        kind: CaseRequestOutcomeKind,
        dead_letter: tuple[SourceRecord, DeadLetter] | None,
        **fields: Any,
    ) -> None:
        """The one terminal outcome of the record (and its dead letter), unless it has one already."""
        outcome = CaseRequestOutcome(requestId=request_id, outcome=kind, **fields)
        if await self.out.terminal(partition, origin, outcome, dead_letter):
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


def decode_retry(message: Any, partitions: int) -> RetryCaseRequest:
    """The retry a ``case-requests.retry`` record carries. Raises InvalidCaseRequest."""
    decode_request(message.key, message.value, int(message.partition), partitions)  # key and partition
    try:
        return RetryCaseRequest.model_validate_json(message.value)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidCaseRequest(f"retry: {dotted(first['loc'])}: {first['msg']}") from None


def _fields(decided: DecidedReply) -> dict[str, Any]:
    return {
        "caseId": decided.case_id,
        "httpStatus": decided.http_status,
        "errorCode": decided.error_code,
        "message": decided.message,
    }


def _request_id_hint(message: Any) -> str:
    key = message.key
    return key.decode(errors="replace") if key else f"{message.topic}:{message.partition}:{message.offset}"
