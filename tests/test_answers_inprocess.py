"""Answer delivery in-process against the simulator: each outcome of DESIGN.md's answer rules."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from offload_bridge.schemas.answers import Outcome, RetryAnswer
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.streams.answers.delivery import AnswerDelivery
from offload_bridge.streams.answers.outputs import call_counts, outcome_counts
from tests.inprocess_support import (
    AnswerRecording,
    MemoryTable,
    Message,
    Simulator,
    Topic,
    drain_retries,
    settings,
    simulator,
)


class Delivery:
    """An AnswerDelivery over the simulator, a dict case-state table and a recording."""

    def __init__(self, sim: Simulator, worker_settings: Settings) -> None:
        self.out = AnswerRecording()
        self.table = MemoryTable()
        self.logic = AnswerDelivery(
            worker_settings, self.table, sim.api(worker_settings), self.out, outcome_counts(), call_counts()
        )
        self.topic = Topic("answers")

    def record(
        self, case_id: str, input_request_id: str, text: str, submitted_by: str | None = None
    ) -> Message:
        value = {"caseId": case_id, "inputRequestId": input_request_id, "providedContext": text}
        if submitted_by is not None:
            value["submittedBy"] = submitted_by
        return self.topic.record(case_id, json.dumps(value).encode())

    async def answer(
        self, case_id: str, input_request_id: str, text: str, submitted_by: str | None = None
    ) -> Message:
        """Handle an answer and every retry it schedules."""
        message = self.record(case_id, input_request_id, text, submitted_by)
        await self.logic.on_answer(message)
        await drain_retries(self.out.retries, self.logic.on_retry)
        return message


@pytest.fixture
async def sim() -> Any:
    async with simulator() as running:
        yield running


async def waiting_case(sim: Simulator) -> tuple[str, str]:
    """A case of the simulator waiting for input: its id and the pending question's id."""
    case_id = await sim.create_case(case_body(scenario="input_then_complete"))
    case = await sim.wait_for_case(
        case_id,
        lambda c: c["status"] == "INPUT_NEEDED" and (c["inputRequest"] or {}).get("status") == "PENDING",
    )
    return case_id, case["inputRequest"]["id"]


async def test_an_answer_is_accepted_and_recorded_in_the_case_state(sim: Simulator) -> None:
    delivery = Delivery(sim, settings())
    case_id, question = await waiting_case(sim)
    await delivery.answer(case_id, question, "Yes, approved.", submitted_by="ap-team")
    (outcome,) = delivery.out.ended
    assert (outcome.outcome, outcome.attempt, outcome.httpStatus) == (Outcome.ACCEPTED, 1, 202)
    assert outcome.submittedBy == "ap-team"  # who answered, for the analytics tables
    recorded = delivery.table[case_id].state.answers[question]
    assert recorded.outcome == Outcome.ACCEPTED and recorded.answerId == outcome.answerId
    assert delivery.table.saved == [case_id]
    assert delivery.logic.call_counts["calls"] == 1


async def test_an_answer_offload_already_took_is_a_duplicate_found_by_looking_at_the_case(
    sim: Simulator,
) -> None:
    case_id, question = await waiting_case(sim)
    await Delivery(sim, settings()).answer(case_id, question, "Yes, approved.")
    # Sent again by a worker whose state does not show it: Offload answers 409, the case shows the text.
    forgetful = Delivery(sim, settings())
    await forgetful.answer(case_id, question, "Yes, approved.")
    (outcome,) = forgetful.out.ended
    assert (outcome.outcome, outcome.httpStatus) == (Outcome.DUPLICATE, 409)
    assert forgetful.logic.call_counts["case_lookups"] == 1


async def test_an_answer_to_another_question_is_a_conflict(sim: Simulator) -> None:
    delivery = Delivery(sim, settings())
    case_id, question = await waiting_case(sim)
    await delivery.answer(case_id, "not-the-question", "Yes.")
    (outcome,) = delivery.out.ended
    assert (outcome.outcome, outcome.errorCode) == (Outcome.CONFLICT, "INPUT_REQUEST_MISMATCH")
    assert outcome.submittedBy is None  # the answer named nobody
    assert outcome.currentInputRequestId == question
    assert delivery.out.dead_letters == []


async def test_an_answer_to_an_unknown_case_is_rejected_and_dead_lettered(sim: Simulator) -> None:
    delivery = Delivery(sim, settings())
    await delivery.answer("no-such-case", "q-1", "Yes.")
    (outcome,) = delivery.out.ended
    assert (outcome.outcome, outcome.httpStatus, outcome.errorCode) == (
        Outcome.REJECTED,
        404,
        "CASE_NOT_FOUND",
    )
    assert [letter.outcome for _, letter in delivery.out.dead_letters] == [Outcome.REJECTED]


async def test_a_throttled_answer_is_retried_no_sooner_than_retry_after(sim: Simulator) -> None:
    delivery = Delivery(sim, settings())
    case_id, question = await waiting_case(sim)
    await sim.set_faults(
        endpoints={"provide_input": {"rate": 1.0, "error": "429-retry-after", "retry_after_s": 1}}
    )
    first = delivery.record(case_id, question, "Yes.")
    sent_at = int(time.time() * 1000)  # whole ms, as notBefore is
    await delivery.logic.on_answer(first)
    (retrying,) = delivery.out.progress
    assert (retrying.outcome, retrying.httpStatus) == (Outcome.RETRYING, 429)
    (retry,) = delivery.out.retries
    scheduled = RetryAnswer.model_validate_json(retry.value or b"")
    assert scheduled.attempt == 2 and scheduled.notBefore >= sent_at + 1000
    # The outcome says when the next attempt is due (the inbox shows it): the retry's own notBefore.
    assert retrying.nextAttemptAt == scheduled.notBefore
    assert dict(retry.headers)["origin"] == f"answers:{first.partition}:{first.offset}".encode()

    await sim.set_faults(endpoints={})
    await drain_retries(delivery.out.retries, delivery.logic.on_retry)
    ((origin, outcome),) = delivery.out.terminal_outcomes
    assert (outcome.outcome, outcome.attempt) == (Outcome.ACCEPTED, 2)
    assert origin == f"answers:{first.partition}:{first.offset}"
    assert time.time() * 1000 >= scheduled.notBefore


async def test_an_answer_failing_every_attempt_is_dead_lettered(sim: Simulator) -> None:
    delivery = Delivery(sim, settings(offload_answer_max_attempts=3))
    case_id, question = await waiting_case(sim)
    await sim.set_faults(endpoints={"provide_input": {"rate": 1.0, "error": "503"}})
    await delivery.answer(case_id, question, "Yes.")
    assert [o.outcome for o in delivery.out.progress] == [Outcome.RETRYING] * 2
    (outcome,) = delivery.out.ended
    assert (outcome.outcome, outcome.attempt, outcome.httpStatus) == (Outcome.DEAD_LETTERED, 3, 503)
    assert "gave up after 3 attempt(s)" in outcome.message
    assert len(delivery.out.dead_letters) == 1


async def test_an_answer_record_seen_again_gets_no_second_outcome_and_no_call(sim: Simulator) -> None:
    delivery = Delivery(sim, settings())
    case_id, question = await waiting_case(sim)
    message = await delivery.answer(case_id, question, "Yes.")
    await delivery.logic.on_answer(message)
    assert [o.outcome for o in delivery.out.ended] == [Outcome.ACCEPTED]
    assert delivery.logic.call_counts["redelivered"] == 1
    assert delivery.logic.call_counts["calls"] == 1


async def test_a_record_that_is_no_answer_is_rejected(sim: Simulator) -> None:
    delivery = Delivery(sim, settings())
    await delivery.logic.on_answer(delivery.topic.record("c-1", b'{"caseId": "c-1"}'))
    (outcome,) = delivery.out.ended
    assert (outcome.outcome, outcome.errorCode) == (Outcome.REJECTED, "INVALID_ANSWER")
    assert delivery.logic.call_counts["calls"] == 0
