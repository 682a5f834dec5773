"""Unit tests of the pure reconciliation parts: the comparison, the synthesized events, the rate limit,
and the POST /cases decisions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from offload_bridge.schemas.case_state import CaseRecord, CaseState
from offload_bridge.schemas.events import parse_event
from offload_bridge.schemas.offload_case import OffloadCase
from offload_bridge.streams.case_requests.policy import CaseRequestDecision, decide_case_request
from offload_bridge.streams.offload_api import OffloadReply, OffloadUnreachable
from offload_bridge.streams.ratelimit import TokenBucket
from offload_bridge.streams.reconcile.diff import ReconcileDecision, decide_reconcile
from offload_bridge.streams.state.fold import FoldResult, fold

CASE = "4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f"


def offload(status: str, updated_at: int, **fields: Any) -> OffloadCase:
    """A GET /cases/{id} answer as the simulator gives it."""
    view = {
        "caseId": CASE, "clientReferenceId": "vendor_2048", "status": status, "createdAt": 1_000,
        "updatedAt": updated_at, "nextActionAt": 253402300799999, "attemptCount": 1, "maxAttempts": 3,
        "channel": "EMAIL", "attachments": [], "resultStatus": None, "result": None, "inputRequest": None,
        "goal": {"objective": "W-9"}, "conversationThread": None, **fields,
    }  # fmt: skip
    return OffloadCase.model_validate(view)


QUESTION = {"id": "ir-1", "question": "Signed PDF ok?", "status": "PENDING", "requestedAt": 2_000}


def state(status: str, last_event_at: int | None, **fields: Any) -> CaseState:
    return CaseState(
        caseId=CASE, status=status, lastEventAt=last_event_at, firstSeenAt=1, updatedAt=1, **fields
    )


def folded(record: CaseRecord | None, body: bytes) -> tuple[CaseRecord, FoldResult]:
    return fold(record, parse_event(body), {"received_at": b"5"})


def test_a_missed_question_becomes_the_webhook_offload_would_have_sent() -> None:
    comparison = decide_reconcile(
        state("RUNNING", 1_500), offload("INPUT_NEEDED", 2_000, inputRequest=QUESTION)
    )
    assert comparison.decision is ReconcileDecision.AHEAD
    event = comparison.event
    assert event is not None
    assert event.event_id == f"evt_{CASE}_case_input_needed_2000"
    payload = json.loads(event.body)
    assert payload["event_type"] == "case.input_needed" and payload["timestamp"] == 2_000
    assert payload["data"] == {
        "caseId": CASE, "clientReferenceId": "vendor_2048", "status": "INPUT_NEEDED", "channel": "EMAIL",
        "attemptCount": 1, "attachments": [], "inputRequest": "Signed PDF ok?", "inputRequestId": "ir-1",
        "inputRequestStatus": "PENDING", "inputRequestedAt": 2_000,
    }  # fmt: skip
    headers = dict(event.headers(received_at=7, source="reconciler"))
    assert headers == {
        "event_type": b"case.input_needed", "event_id": event.event_id.encode(), "received_at": b"7",
        "source": b"reconciler",
    }  # fmt: skip
    assert comparison.describe(CASE).endswith(
        f"RUNNING -> INPUT_NEEDED: published case.input_needed {event.event_id}"
    )


def test_the_real_webhook_arriving_after_the_synthesized_event_is_a_duplicate() -> None:
    view = offload("COMPLETED", 3_000, resultStatus="goal_achieved", result={"signedW9Received": True})
    event = decide_reconcile(None, view).event
    assert event is not None
    record, outcome = folded(None, event.body)
    assert outcome is FoldResult.APPLIED
    assert (record.state.status, record.state.resultStatus) == ("COMPLETED", "goal_achieved")
    assert record.state.result == {"signedW9Received": True}
    webhook = json.dumps({
        "event_id": f"evt_{CASE}_case_completed_3000", "event_type": "case.completed", "timestamp": 3_000,
        "data": {"caseId": CASE, "status": "COMPLETED", "resultStatus": "goal_achieved", "result": {}},
    }).encode()  # fmt: skip
    _, late = folded(record, webhook)
    assert late is FoldResult.DUPLICATE


def test_failed_carries_the_result_status_and_no_result_when_offload_has_none() -> None:
    event = decide_reconcile(
        state("RUNNING", 1_000), offload("FAILED", 4_000, resultStatus="max_retries")
    ).event
    assert event is not None
    data = json.loads(event.body)["data"]
    assert (data["status"], data["resultStatus"]) == ("FAILED", "max_retries")
    assert "result" not in data


def test_running_after_an_answer_is_a_synthetic_status_event_the_fold_applies() -> None:
    ours = CaseRecord(state=state("INPUT_NEEDED", 2_000))
    comparison = decide_reconcile(
        ours.state, offload("RUNNING", 2_600, inputRequest={**QUESTION, "status": "RESOLVED"})
    )
    assert comparison.decision is ReconcileDecision.AHEAD and comparison.event is not None
    assert comparison.event.event_type == "case.running"
    assert comparison.event.event_id == f"evt_{CASE}_case_running_2600"
    record, outcome = folded(ours, comparison.event.body)
    assert outcome is FoldResult.APPLIED
    assert (record.state.status, record.state.lastEventAt) == ("RUNNING", 2_600)


def test_the_bridges_case_created_folds_as_a_status_only_event() -> None:
    event = decide_reconcile(None, offload("CREATED", 1_000, attemptCount=0)).event
    assert event is not None and event.event_type == "case.created"
    record, outcome = folded(None, event.body)
    assert outcome is FoldResult.APPLIED and record.state.status == "CREATED"


def test_a_case_first_known_running_keeps_the_channel_and_reference_offload_gave() -> None:
    # A tracked case (case-watch) that Offload shows RUNNING: no webhook of that status exists, and the
    # synthetic case.running is all the state learns of the case.
    event = decide_reconcile(None, offload("RUNNING", 1_500)).event
    assert event is not None and event.event_type == "case.running"
    record, outcome = folded(None, event.body)
    assert outcome is FoldResult.APPLIED
    state = record.state
    assert (state.status, state.channel, state.clientReferenceId) == ("RUNNING", "EMAIL", "vendor_2048")


def test_level_behind_and_diverged_publish_nothing() -> None:
    waiting = state("INPUT_NEEDED", 2_000, inputRequest=QUESTION)
    same = offload("INPUT_NEEDED", 2_000, inputRequest=QUESTION)
    assert decide_reconcile(waiting, same).decision is ReconcileDecision.LEVEL
    # Answer accepted: Offload resolves the request without a new updatedAt. Nothing to publish.
    resolved = offload("INPUT_NEEDED", 2_000, inputRequest={**QUESTION, "status": "RESOLVED"})
    assert decide_reconcile(waiting, resolved).decision is ReconcileDecision.LEVEL
    older = offload("RUNNING", 1_500)
    assert decide_reconcile(waiting, older).decision is ReconcileDecision.BEHIND
    other = offload("RUNNING", 2_000)
    diverged = decide_reconcile(waiting, other)
    assert diverged.decision is ReconcileDecision.DIVERGED and diverged.event is None


def test_a_newer_update_with_the_same_status_still_moves_us_forward() -> None:
    # A follow-up email: RUNNING stays RUNNING, updatedAt moves; the event keeps the next check quiet.
    comparison = decide_reconcile(state("RUNNING", 1_500), offload("RUNNING", 1_900, attemptCount=2))
    assert comparison.decision is ReconcileDecision.AHEAD
    assert comparison.event is not None and comparison.event.event_id == f"evt_{CASE}_case_running_1900"


def test_what_cannot_be_expressed_is_incomplete() -> None:
    assert decide_reconcile(None, offload("INPUT_NEEDED", 2_000)).decision is ReconcileDecision.INCOMPLETE
    assert decide_reconcile(None, offload("PAUSED FOR AUDIT", 2_000)).decision is ReconcileDecision.INCOMPLETE


def test_token_bucket_spaces_calls_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=5, clock=lambda: now[0])
    assert bucket.wait_s() == 0
    assert bucket.wait_s() == pytest.approx(0.2)
    now[0] = 0.2
    assert bucket.wait_s() == 0
    now[0] = 10.0  # idle time fills at most `burst` tokens
    assert bucket.wait_s() == 0
    assert bucket.wait_s() > 0


def reply(status: int, code: str | None = None, data: dict[str, Any] | None = None) -> OffloadReply:
    return OffloadReply(status, data, code, "msg", None, enveloped=code is not None or data is not None)


@pytest.mark.parametrize(
    ("result", "decision"),
    [
        (reply(201, data={"caseId": "c-1"}), CaseRequestDecision.CREATED),
        (reply(202, data={}), CaseRequestDecision.UNKNOWN),
        (reply(400, "INVALID_REQUEST"), CaseRequestDecision.REJECTED),
        (reply(429, "USAGE_LIMIT_REACHED"), CaseRequestDecision.REJECTED),
        (reply(429), CaseRequestDecision.RETRY),
        (reply(500, "INTERNAL_ERROR"), CaseRequestDecision.UNKNOWN),
        (reply(502), CaseRequestDecision.UNKNOWN),
        (reply(401, "UNAUTHORIZED"), CaseRequestDecision.DEAD_LETTER),
        (reply(403, "FORBIDDEN"), CaseRequestDecision.DEAD_LETTER),
        (reply(422), CaseRequestDecision.REJECTED),
        (OffloadUnreachable("refused", reached=False), CaseRequestDecision.RETRY),
        (OffloadUnreachable("timeout", reached=True), CaseRequestDecision.UNKNOWN),
    ],
)
def test_create_case_decisions(
    result: OffloadReply | OffloadUnreachable, decision: CaseRequestDecision
) -> None:
    decided = decide_case_request(result)
    assert decided.decision is decision
    if decision is CaseRequestDecision.CREATED:
        assert decided.case_id == "c-1"
    if isinstance(result, OffloadReply):
        assert (decided.http_status, decided.error_code) == (result.status, result.error_code)
