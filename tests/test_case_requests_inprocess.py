"""Case creation in-process against the simulator: what each reply of ``POST /cases`` leads to."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from offload_bridge.schemas.answers import DlqHeader
from offload_bridge.schemas.case_requests import (
    CaseRequestOutcomeKind,
    CaseRequestRecord,
    CaseRequestStatus,
    RetryCaseRequest,
)
from offload_bridge.schemas.dlq import dlq_headers
from offload_bridge.schemas.headers import REDRIVEN_FROM_HEADER
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.streams.case_requests.creation import CaseCreation
from tests.inprocess_support import (
    CaseRequestRecording,
    MemoryTable,
    Message,
    RefusingTransport,
    Simulator,
    Topic,
    drain_retries,
    settings,
    simulator,
)

Kind = CaseRequestOutcomeKind


class Creation:
    """A CaseCreation over the simulator, a dict table and a recording, fed from a case-requests topic."""

    def __init__(self, sim: Simulator, worker_settings: Settings, transport: Any = None) -> None:
        self.sim = sim
        self.out = CaseRequestRecording()
        self.table = MemoryTable()
        self.logic = CaseCreation(worker_settings, self.table, sim.api(worker_settings, transport), self.out)
        self.topic = Topic("case-requests")

    def record(self, request_id: str, **body: Any) -> Message:
        value = json.dumps({**case_body(**body), "requestId": request_id}).encode()
        return self.topic.record(request_id, value)

    async def publish(self, request_id: str, **body: Any) -> Message:
        """Handle a request and every retry it schedules; the record handled first."""
        message = self.record(request_id, **body)
        await self.handle(message)
        return message

    async def handle(self, message: Message) -> None:
        await self.logic.on_request(message)
        await drain_retries(self.out.retries, self.logic.on_retry)

    async def redrive(self, index: int = -1) -> Message:
        """Republish a dead letter to case-requests as ``dlq redrive`` does (same key and value, header
        ``redriven_from``) and handle it."""
        source, _ = self.out.dead_letters[index]
        # The dead letters' own offsets do not matter to the worker, only the header's presence.
        where = f"case-requests.dlq:0:{index % len(self.out.dead_letters)}"
        message = self.topic.record(source.key, source.value, [(REDRIVEN_FROM_HEADER, where.encode())])
        await self.handle(message)
        return message


@pytest.fixture
async def sim() -> Any:
    async with simulator() as running:
        yield running


async def test_created_once_and_the_same_request_again_is_a_duplicate(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    first = await creation.publish("req-1", clientReferenceId="po-1")
    await creation.publish("req-1", clientReferenceId="po-1")
    created, again = creation.out.ended
    assert (created.outcome, created.httpStatus) == (Kind.CREATED, 201)
    assert created.caseId is not None
    assert (again.outcome, again.caseId) == (Kind.DUPLICATE, created.caseId)
    assert await sim.case_ids() == [created.caseId]
    assert creation.out.announced == [(created.caseId, "req-1")]
    assert creation.table["req-1"].origin == f"case-requests:{first.partition}:{first.offset}"
    assert creation.logic.counts.as_dict()["created"] == 1


async def test_refused_and_invalid_requests_are_rejected_and_dead_lettered(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    await creation.publish("req-400", scenario="no_such_scenario")
    await creation.logic.on_request(creation.topic.record("req-bad", b"{not json"))
    refused, invalid = creation.out.ended
    assert (refused.outcome, refused.httpStatus, refused.errorCode) == (Kind.REJECTED, 400, "INVALID_REQUEST")
    assert (invalid.outcome, invalid.errorCode) == (Kind.REJECTED, "INVALID_REQUEST")
    assert [source.key for source, _ in creation.out.dead_letters] == [b"req-400", b"req-bad"]
    assert await sim.case_ids() == []


async def test_the_monthly_cap_is_rejected_without_a_retry(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    await sim.set_faults(usage_limit=0)
    await creation.publish("req-cap")
    assert [(o.outcome, o.httpStatus, o.errorCode) for o in creation.out.ended] == [
        (Kind.REJECTED, 429, "USAGE_LIMIT_REACHED")
    ]
    assert creation.out.progress_outcomes == [] and creation.out.retries == []


async def test_a_throttled_request_is_retried_through_the_retry_topic(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    await sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "429"}})
    first = creation.record("req-429")
    await creation.logic.on_request(first)
    assert [o.outcome for o in creation.out.progress_outcomes] == [Kind.RETRYING]
    (retry,) = creation.out.retries
    scheduled = RetryCaseRequest.model_validate_json(retry.value or b"")
    assert (scheduled.requestId, scheduled.attempt) == ("req-429", 2)
    assert dict(retry.headers)["origin"] == f"case-requests:{first.partition}:{first.offset}".encode()
    assert creation.table["req-429"].status is CaseRequestStatus.RETRYING

    await sim.set_faults(endpoints={})
    await drain_retries(creation.out.retries, creation.logic.on_retry)
    ((origin, created),) = creation.out.terminal_outcomes
    assert created.outcome is Kind.CREATED and origin == f"case-requests:{first.partition}:{first.offset}"
    assert await sim.case_ids() == [created.caseId]
    # The same retry record again (a redelivery after a crash): no call, no second outcome.
    await creation.logic.on_retry(retry)
    assert len(creation.out.ended) == 1 and len(await sim.case_ids()) == 1


async def test_retries_end_dead_lettered_after_the_attempt_budget(sim: Simulator) -> None:
    creation = Creation(sim, settings(offload_case_request_max_attempts=3))
    await sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "429"}})
    await creation.publish("req-429")
    assert [o.outcome for o in creation.out.progress_outcomes] == [Kind.RETRYING] * 2
    (outcome,) = creation.out.ended
    assert outcome.outcome is Kind.DEAD_LETTERED
    assert outcome.httpStatus == 429 and "after 3 attempt(s)" in outcome.message
    ((source, letter),) = creation.out.dead_letters
    # The dead letter names the case-requests record, not the retry that made the last attempt.
    assert source.topic == "case-requests" and letter.kind is Kind.DEAD_LETTERED
    assert json.loads(source.value or b"")["requestId"] == "req-429"
    assert "attempt" not in json.loads(source.value or b"")


async def test_a_5xx_ends_unknown_in_the_dlq_without_a_second_call(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    await sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "503"}})
    await creation.publish("req-503")
    assert creation.out.progress_outcomes == []
    (outcome,) = creation.out.ended
    assert outcome.outcome is Kind.UNKNOWN and outcome.httpStatus == 503
    assert "may have created the case" in outcome.message
    ((source, letter),) = creation.out.dead_letters
    assert letter.kind is Kind.UNKNOWN and json.loads(source.value or b"")["requestId"] == "req-503"
    assert await sim.case_ids() == []  # this fault fails before creating; an operator checks, then redrives


async def test_a_refused_connection_is_retried_and_creates_one_case(sim: Simulator) -> None:
    creation = Creation(sim, settings(), transport=RefusingTransport(sim.transport, refusals=2))
    await creation.publish("req-refused")
    assert [o.outcome for o in creation.out.progress_outcomes] == [Kind.RETRYING] * 2
    (created,) = creation.out.ended
    assert created.outcome is Kind.CREATED
    assert await sim.case_ids() == [created.caseId]


async def test_a_call_in_flight_at_a_crash_ends_unknown_without_a_call(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    message = creation.record("req-crash")
    origin = f"case-requests:{message.partition}:{message.offset}"
    creation.table["req-crash"] = CaseRequestRecord(
        requestId="req-crash", status=CaseRequestStatus.PENDING, attempt=1, origin=origin
    )
    await creation.logic.on_request(message)
    (outcome,) = creation.out.ended
    assert outcome.outcome is Kind.UNKNOWN and "in flight" in outcome.message
    # Dead-lettered with its context, so that an operator can find it and redrive it on purpose.
    ((source, letter),) = creation.out.dead_letters
    assert (source.topic, source.partition, source.offset) == (
        "case-requests",
        message.partition,
        message.offset,
    )
    assert (source.key, source.value) == (message.key, message.value)
    assert (letter.kind, letter.error) == (Kind.UNKNOWN, outcome.message)
    await creation.publish("req-crash")
    assert creation.out.ended[-1].outcome is Kind.DUPLICATE
    assert "ended unknown" in creation.out.ended[-1].message
    assert await sim.case_ids() == []


async def test_a_request_record_seen_again_gets_no_second_outcome(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    message = await creation.publish("req-again")
    await creation.logic.on_request(message)
    assert [o.outcome for o in creation.out.ended] == [Kind.CREATED]
    assert creation.logic.counts["redelivered"] == 1
    assert len(await sim.case_ids()) == 1


async def test_an_unknown_dead_letter_carries_the_headers_of_every_dlq(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    message = creation.record("req-crash")
    origin = f"case-requests:{message.partition}:{message.offset}"
    creation.table["req-crash"] = CaseRequestRecord(
        requestId="req-crash", status=CaseRequestStatus.PENDING, attempt=2, origin=origin
    )
    await creation.logic.on_request(message)
    ((source, letter),) = creation.out.dead_letters
    headers = dict(
        dlq_headers(
            outcome=letter.kind.value, error=letter.error, error_code=letter.code,
            http_status=letter.http_status, topic=source.topic, partition=source.partition,
            offset=source.offset, at_ms=1,
        )
    )  # fmt: skip
    assert headers[DlqHeader.OUTCOME] == b"unknown"
    assert headers[DlqHeader.ERROR].startswith(b"attempt 2 was in flight")
    assert (headers[DlqHeader.ERROR_CODE], headers[DlqHeader.HTTP_STATUS]) == (b"", b"")
    assert headers[DlqHeader.ORIGINAL_TOPIC] == b"case-requests"
    assert headers[DlqHeader.ORIGINAL_PARTITION] == str(message.partition).encode()
    assert headers[DlqHeader.ORIGINAL_OFFSET] == str(message.offset).encode()


async def test_a_retry_in_flight_at_a_crash_dead_letters_the_request_record(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    await sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "429"}})
    first = creation.record("req-retry-crash")
    await creation.logic.on_request(first)
    (retry,) = creation.out.retries
    # The worker stopped during the call the retry made.
    entry = creation.table["req-retry-crash"]
    creation.table["req-retry-crash"] = entry.model_copy(
        update={"status": CaseRequestStatus.PENDING, "attempt": 2}
    )
    await creation.logic.on_retry(retry)
    (outcome,) = creation.out.ended
    assert outcome.outcome is Kind.UNKNOWN
    ((source, letter),) = creation.out.dead_letters
    # The dead letter is the case-requests record, as published, not the retry record.
    assert (source.topic, source.offset, letter.kind) == ("case-requests", first.offset, Kind.UNKNOWN)
    assert json.loads(source.value or b"") == json.loads(first.value or b"")
    assert await sim.case_ids() == []


async def test_a_2xx_without_a_case_id_ends_unknown_and_is_dead_lettered() -> None:
    async def no_case_id(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"ok": True, "data": {}})

    async with simulator() as sim:
        creation = Creation(sim, settings(), transport=httpx.MockTransport(no_case_id))
        await creation.publish("req-2xx")
    (outcome,) = creation.out.ended
    assert (outcome.outcome, outcome.httpStatus) == (Kind.UNKNOWN, 201)
    ((_, letter),) = creation.out.dead_letters
    assert (letter.kind, letter.http_status, letter.error) == (Kind.UNKNOWN, 201, "a 2xx without a caseId")


async def test_a_redriven_dead_letter_gets_a_fresh_attempt_and_creates_one_case(sim: Simulator) -> None:
    creation = Creation(sim, settings(offload_case_request_max_attempts=2))
    await sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "429"}})
    first = await creation.publish("req-dl")
    assert [o.outcome for o in creation.out.ended] == [Kind.DEAD_LETTERED]

    await sim.set_faults(endpoints={})
    redriven = await creation.redrive()
    (dead_origin, _), (created_origin, created) = creation.out.terminal_outcomes
    assert dead_origin == f"case-requests:{first.partition}:{first.offset}"
    # A new record, so its own terminal outcome.
    assert created_origin == f"case-requests:{redriven.partition}:{redriven.offset}"
    assert (created.outcome, created.httpStatus) == (Kind.CREATED, 201)
    assert await sim.case_ids() == [created.caseId]
    assert creation.out.announced == [(created.caseId, "req-dl")]
    entry = creation.table["req-dl"]
    # Attempts counted from 1 again, under the redriven record.
    assert (entry.status, entry.attempt, entry.origin) == (CaseRequestStatus.CREATED, 1, created_origin)

    # The same redriven record seen again after a crash: no second outcome, no second case.
    await creation.handle(redriven)
    assert len(creation.out.ended) == 2 and len(await sim.case_ids()) == 1
    # The dead letter redriven a second time: the request was created, so it is a duplicate with its caseId.
    await creation.redrive(0)
    again = creation.out.ended[-1]
    assert (again.outcome, again.caseId) == (Kind.DUPLICATE, created.caseId)
    assert await sim.case_ids() == [created.caseId]


async def test_a_redriven_retry_budget_counts_from_one(sim: Simulator) -> None:
    creation = Creation(sim, settings(offload_case_request_max_attempts=2))
    await sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "429"}})
    await creation.publish("req-twice")
    await creation.redrive()
    # Each record had its two attempts, and each ended dead-lettered with its own dead letter.
    assert [o.outcome for o in creation.out.ended] == [Kind.DEAD_LETTERED] * 2
    assert [o.outcome for o in creation.out.progress_outcomes] == [Kind.RETRYING] * 2
    assert all("after 2 attempt(s)" in o.message for o in creation.out.ended)
    assert len(creation.out.dead_letters) == 2


async def test_a_redriven_unknown_request_is_sent_again(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    message = creation.record("req-u")
    origin = f"case-requests:{message.partition}:{message.offset}"
    creation.table["req-u"] = CaseRequestRecord(
        requestId="req-u", status=CaseRequestStatus.PENDING, attempt=1, origin=origin
    )
    await creation.logic.on_request(message)
    # Redriven on purpose (``--force``): the operator checked that Offload has no case.
    await creation.redrive()
    assert [o.outcome for o in creation.out.ended] == [Kind.UNKNOWN, Kind.CREATED]
    assert await sim.case_ids() == [creation.out.ended[-1].caseId]


async def test_a_redriven_rejected_request_is_sent_again(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    await sim.set_faults(usage_limit=0)
    await creation.publish("req-cap")
    # The monthly cap lifted: Offload refused the request before, so it has no case of it.
    await sim.set_faults(usage_limit=None)
    await creation.redrive()
    assert [o.outcome for o in creation.out.ended] == [Kind.REJECTED, Kind.CREATED]
    assert await sim.case_ids() == [creation.out.ended[-1].caseId]


async def test_a_redriven_created_request_stays_a_duplicate(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    first = await creation.publish("req-made")
    (created,) = creation.out.ended
    # A copy of the request redriven from the DLQ (by hand, say) after it was created.
    value = first.value
    redriven = creation.topic.record("req-made", value, [(REDRIVEN_FROM_HEADER, b"case-requests.dlq:0:0")])
    await creation.handle(redriven)
    again = creation.out.ended[-1]
    assert (again.outcome, again.caseId) == (Kind.DUPLICATE, created.caseId)
    assert "ended created" in again.message
    assert await sim.case_ids() == [created.caseId]


async def test_without_the_redrive_header_a_dead_lettered_request_stays_a_duplicate(sim: Simulator) -> None:
    creation = Creation(sim, settings(offload_case_request_max_attempts=1))
    await sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "429"}})
    await creation.publish("req-plain")
    await sim.set_faults(endpoints={})
    await creation.publish("req-plain")
    dead, again = creation.out.ended
    assert dead.outcome is Kind.DEAD_LETTERED
    assert again.outcome is Kind.DUPLICATE and "ended dead_lettered" in again.message
    assert await sim.case_ids() == []
    assert len(creation.out.dead_letters) == 1


async def test_a_500_after_the_case_was_created_ends_unknown_with_one_case(sim: Simulator) -> None:
    creation = Creation(sim, settings())
    await sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "500", "when": "after"}})
    await creation.publish("req-500")
    assert [o.outcome for o in creation.out.ended] == [Kind.UNKNOWN]
    assert len(await sim.case_ids()) == 1
