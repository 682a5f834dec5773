"""Unit tests of answer decoding and of what the case views say about an answer (pure, no I/O)."""

from __future__ import annotations

import json

import pytest

from offload_bridge.schemas.answers import Answer, RetryAnswer, default_answer_id
from offload_bridge.schemas.case_state import AnswerRecord, CaseRecord, CaseState, InputRequest
from offload_bridge.streams.answers.case_view import (
    accepted_in_table,
    merged_context,
    offload_view,
    table_context,
)
from offload_bridge.streams.answers.records import InvalidAnswer, decode_answer
from offload_bridge.streams.offload_api import OffloadReply

WHERE = ("offload.answers", 2, 17)


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_valid_answer_gets_its_default_id() -> None:
    answer = decode_answer(
        Answer, b"c1", body(caseId="c1", inputRequestId="q1", providedContext=" Yes "), WHERE
    )
    assert answer.providedContext == "Yes"
    assert answer.answer_id == default_answer_id("c1", "q1", "Yes")


@pytest.mark.parametrize(
    ("key", "value", "reason", "case_id"),
    [
        (b"c1", b"not json", "not JSON", "c1"),
        (None, b"not json", "not JSON", None),
        (b"c1", None, "record has no value", "c1"),
        (b"c1", b"[1]", "schema", "c1"),
        (
            b"c1",
            body(caseId="c1", inputRequestId="q1", providedContext="  "),
            "schema: providedContext",
            "c1",
        ),
        (b"c1", body(caseId="c1", providedContext="Yes"), "schema: inputRequestId", "c1"),
        (b"other", body(caseId="c1", inputRequestId="q1", providedContext="Yes"), "record key 'other'", "c1"),
    ],
)
def test_invalid_records_say_why_and_keep_what_can_be_read(
    key: bytes | None, value: bytes | None, reason: str, case_id: str | None
) -> None:
    with pytest.raises(InvalidAnswer) as raised:
        decode_answer(Answer, key, value, WHERE)
    assert str(raised.value).startswith(reason), str(raised.value)
    assert raised.value.case_id == case_id
    assert raised.value.answer_id


def test_an_invalid_answer_keeps_its_own_or_derived_id() -> None:
    with pytest.raises(InvalidAnswer) as own:
        decode_answer(
            Answer, b"x", body(caseId="c1", inputRequestId="q1", providedContext="Y", answerId="a1"), WHERE
        )
    assert own.value.answer_id == "a1"
    with pytest.raises(InvalidAnswer) as nothing:
        decode_answer(Answer, None, b"{}", WHERE)
    assert nothing.value.answer_id == "invalid_offload.answers_2_17"


def test_a_retry_record_needs_its_attempt() -> None:
    fields = {"caseId": "c1", "inputRequestId": "q1", "providedContext": "Yes"}
    with pytest.raises(InvalidAnswer):
        decode_answer(RetryAnswer, b"c1", body(**fields), WHERE)
    retry = decode_answer(RetryAnswer, b"c1", body(**fields, attempt=2, notBefore=5), WHERE)
    assert (retry.attempt, retry.notBefore, retry.notWaitingRetries) == (2, 5, 0)


def _record(question_status: str = "PENDING", answer_id: str | None = None) -> CaseRecord:
    state = CaseState(
        caseId="c1",
        status="INPUT_NEEDED",
        firstSeenAt=1,
        updatedAt=1,
        inputRequest=InputRequest(id="q1", question="Q?", status=question_status),
        answers={"q1": AnswerRecord(answerId=answer_id, outcome="accepted", at=2)} if answer_id else {},
    )
    return CaseRecord(state=state)


def test_table_context_knows_pending_questions_and_our_accepted_answers() -> None:
    answer = Answer(caseId="c1", inputRequestId="q1", providedContext="Yes")
    context = table_context(_record(), answer)
    assert (context.case_status, context.pending_input_request_id, context.delivered) == (
        "INPUT_NEEDED",
        "q1",
        False,
    )
    assert table_context(_record("RESOLVED"), answer).pending_input_request_id is None
    assert accepted_in_table(_record(answer_id=answer.answer_id), answer)
    assert not accepted_in_table(_record(answer_id="someone-else"), answer)
    assert not accepted_in_table(None, answer)


def _case(context: object, status: str = "RUNNING") -> OffloadReply:
    data = {"status": status, "inputRequest": {"id": "q1", "status": "RESOLVED"},
            "goal": {"objective": "W-9", "knowledge": {"additionalHumanContext": context}}}  # fmt: skip
    return OffloadReply(200, data, None, "", None, enveloped=True)


def test_offload_view_finds_the_answer_in_additional_human_context() -> None:
    answer = Answer(caseId="c1", inputRequestId="q1", providedContext="Yes, Monday.")
    seen = offload_view(_case(["Earlier.", "Yes, Monday."]), answer)
    assert seen is not None and seen.delivered and seen.status == "RUNNING" and seen.input_request_id == "q1"
    assert offload_view(_case("Earlier.\nYes, Monday."), answer).delivered  # type: ignore[union-attr]
    assert not offload_view(_case(["Someone else's answer."]), answer).delivered  # type: ignore[union-attr]
    assert not offload_view(_case(None), answer).delivered  # type: ignore[union-attr]
    assert offload_view(OffloadReply(404, None, "CASE_NOT_FOUND", "", None, enveloped=True), answer) is None
    merged = merged_context(table_context(_record(), answer), seen)
    assert (merged.case_status, merged.pending_input_request_id, merged.delivered) == ("RUNNING", "q1", True)
