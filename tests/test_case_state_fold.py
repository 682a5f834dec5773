"""The pure fold: one event at a time into a case's record."""

from __future__ import annotations

from typing import Any

from offload_bridge.schemas.case_state import RECENT_EVENT_IDS, CaseRecord
from offload_bridge.schemas.events import parse_event
from offload_bridge.streams.state.fold import FoldResult, fold
from offload_bridge.streams.state.records import InvalidRecord, decode_event
from tests.streams_support import SEED_COMPLETED, SEED_INPUT_NEEDED, event_body

HEADERS = {"received_at": b"5000"}


def folded(*bodies: bytes, headers: dict[str, bytes] | None = None) -> tuple[CaseRecord, list[FoldResult]]:
    record: CaseRecord | None = None
    outcomes = []
    for body in bodies:
        record, outcome = fold(record, parse_event(body), headers or HEADERS)
        outcomes.append(outcome)
    assert record is not None
    return record, outcomes


def question(case: str = "c1", at: int = 1_000, request_id: str = "ir-1", **data: Any) -> bytes:
    return event_body(case, "case.input_needed", at, "INPUT_NEEDED", inputRequest=f"Q {request_id}?",
                      inputRequestId=request_id, inputRequestedAt=at, **data)  # fmt: skip


def test_input_needed_sets_the_pending_question() -> None:
    record, outcomes = folded(SEED_INPUT_NEEDED)
    state = record.state
    assert outcomes == [FoldResult.APPLIED]
    assert state.status == "INPUT_NEEDED"
    assert state.inputRequest is not None
    assert state.inputRequest.id == "c8c6a7ca-a913-4d13-8cd8-5887efb0531c"
    assert state.inputRequest.status == "PENDING"
    assert state.inputRequest.requestedAt == 1774131900300
    assert state.clientReferenceId == "vendor_2048"
    assert state.firstSeenAt == state.updatedAt == 5000
    assert state.eventCount == 1


def test_completed_and_failed_set_the_result_and_clear_the_question() -> None:
    completed = event_body(
        "c1", "case.completed", 2_000, "COMPLETED", resultStatus="goal_achieved", result={"x": 1}
    )
    done, _ = folded(question(), completed)
    assert done.state.inputRequest is None
    assert (done.state.status, done.state.resultStatus) == ("COMPLETED", "goal_achieved")
    assert done.state.result == {"x": 1}
    failed_event = event_body(
        "c1", "case.failed", 2_000, "FAILED", resultStatus="max_retries", failureReason="no reply"
    )
    failed, _ = folded(question(), failed_event)
    assert failed.state.inputRequest is None
    assert (failed.state.status, failed.state.failureReason) == ("FAILED", "no reply")


def test_seed_completed_keeps_fields_it_does_not_carry() -> None:
    record, _ = folded(question("case_123", at=1_000, metadata={"team": "ap"}), SEED_COMPLETED)
    assert record.state.status == "COMPLETED"
    assert record.state.metadata == {"team": "ap"}, "an event without metadata keeps what we had"
    assert record.state.attemptCount == 2


def test_duplicate_event_id_changes_nothing() -> None:
    first, _ = folded(question())
    again, outcome = fold(first, parse_event(question()), {"received_at": b"9999"})
    assert outcome is FoldResult.DUPLICATE
    assert again is first


def test_older_event_is_counted_but_never_overwrites() -> None:
    record, outcomes = folded(
        event_body("c1", "case.completed", 2_000, "COMPLETED", resultStatus="goal_achieved"),
        question(at=1_000, clientReferenceId="late-ref"),
    )
    assert outcomes == [FoldResult.APPLIED, FoldResult.STALE]
    state = record.state
    assert state.status == "COMPLETED"
    assert state.inputRequest is None
    assert state.lastEventAt == 2_000
    assert (state.eventCount, state.staleEventCount) == (2, 1)
    assert state.clientReferenceId == "late-ref", "a stale event may fill a field still unknown"


def test_terminal_status_wins_a_tie() -> None:
    completed = event_body("c1", "case.completed", 1_000, "COMPLETED")
    record, outcomes = folded(completed, question(at=1_000))
    assert outcomes == [FoldResult.APPLIED, FoldResult.STALE]
    assert record.state.status == "COMPLETED"
    record, outcomes = folded(question(at=1_000), completed)
    assert outcomes == [FoldResult.APPLIED, FoldResult.APPLIED]
    assert record.state.status == "COMPLETED"


def test_unknown_type_moves_only_a_known_status_when_newer() -> None:
    record, outcomes = folded(
        question(at=1_000, attemptCount=1),
        event_body("c1", "case.resumed", 2_000, "RUNNING", attemptCount=5),
        event_body("c1", "case.paused", 3_000, "PAUSED"),
    )
    assert outcomes == [FoldResult.APPLIED, FoldResult.APPLIED, FoldResult.IGNORED]
    state = record.state
    assert (state.status, state.attemptCount, state.lastEventAt) == ("RUNNING", 1, 2_000)
    assert state.inputRequest is not None, "only a terminal status clears the question"
    assert state.eventCount == 3


def test_a_status_only_event_fills_what_is_unknown_and_never_overwrites() -> None:
    record, _ = folded(event_body("c1", "case.running", 1_000, "RUNNING", clientReferenceId="ref-1"))
    assert (record.state.channel, record.state.clientReferenceId) == ("EMAIL", "ref-1")
    record, outcome = fold(
        record,
        parse_event(event_body("c1", "case.running", 2_000, "RUNNING", channel="SMS", clientReferenceId="x")),
        {},
    )
    assert outcome is FoldResult.APPLIED and record.state.lastEventAt == 2_000
    assert (record.state.channel, record.state.clientReferenceId) == ("EMAIL", "ref-1")


def test_a_new_question_replaces_the_old_one() -> None:
    record, _ = folded(question(at=1_000, request_id="ir-1"), question(at=2_000, request_id="ir-2"))
    assert record.state.inputRequest is not None and record.state.inputRequest.id == "ir-2"


def test_dedup_window_is_bounded() -> None:
    bodies = [question(at=n, request_id=f"ir-{n}") for n in range(1, RECENT_EVENT_IDS + 10)]
    record, _ = folded(*bodies)
    assert len(record.recentEventIds) == RECENT_EVENT_IDS
    assert record.recentEventIds[-1] == parse_event(bodies[-1]).event_id
    # Beyond the window an old event is no longer known by id, but it is stale: nothing changes.
    again, outcome = fold(record, parse_event(bodies[0]), HEADERS)
    assert outcome is FoldResult.STALE
    assert again.state.inputRequest == record.state.inputRequest


def test_received_at_falls_back_to_the_event_timestamp() -> None:
    record, _ = folded(question(at=1_234), headers={"received_at": b"not-a-number"})
    assert record.state.firstSeenAt == 1_234


def test_fold_depends_on_the_events_and_headers_only() -> None:
    """Replaying case-events must rebuild the same table, so the fold's output is compared with a record
    written out by hand rather than with a second fold: two folds a microsecond apart agree even when both
    stamp the wall clock. Every timestamp below comes from an event or a received_at header, and the headers
    are far from today's clock, so a field taken from time.time() or datetime.now() cannot match."""
    events = [
        (question(at=1_000), b"5000"),
        (SEED_COMPLETED.replace(b"case_123", b"c1"), b"6000"),
        (question(at=500, request_id="x"), b"7000"),  # stale: counted, changes no field
    ]
    record: CaseRecord | None = None
    for body, at in events:
        record, _ = fold(record, parse_event(body), {"received_at": at})
    assert record is not None
    assert record.model_dump(mode="json") == {
        "state": {
            "caseId": "c1",
            "clientReferenceId": "vendor_2048",
            "status": "COMPLETED",
            "channel": "EMAIL",
            "attemptCount": 2,
            "resultStatus": "goal_achieved",
            "result": {
                "signedW9Received": True,
                "taxId": "12-3456789",
                "documentUrl": "https://files.example.com/w9.pdf",
            },
            "failureReason": None,
            "metadata": None,
            "attachments": [],
            "inputRequest": None,
            "lastEventId": "evt_c1_case_completed_1774131900000",
            "lastEventType": "case.completed",
            "lastEventAt": 1774131900000,
            "firstSeenAt": 5000,
            "updatedAt": 6000,
            "eventCount": 3,
            "staleEventCount": 1,
            "answers": {},
        },
        "recentEventIds": [
            "evt_c1_case_input_needed_1000",
            "evt_c1_case_completed_1774131900000",
            "evt_c1_case_input_needed_500",
        ],
        "check": None,  # the reconcile schedule is the state agent's to set, from the same headers
    }


def test_invalid_records_are_named() -> None:
    cases: list[tuple[bytes | None, bytes | None, str]] = [
        (b"c1", None, "no value"),
        (b"c1", b"not json", "not a JSON object"),
        (b"c1", b"[1]", "not a JSON object"),
        (b"c1", b'{"event_id": "e"}', "schema: event_type"),
        (b"c1", event_body("c1", "order.created", 1, "X"), "schema: event_type"),
        (b"other", question("c1"), "is not the event's caseId"),
        (None, question("c1"), "is not the event's caseId"),
    ]  # fmt: skip
    for key, value, reason in cases:
        try:
            decode_event(key, value)
        except InvalidRecord as error:
            assert reason in str(error), (value, str(error))
        else:
            raise AssertionError(f"{value!r} was accepted")
    assert decode_event(b"c1", question("c1")).data.caseId == "c1"
