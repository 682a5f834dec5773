"""The answer delivery rules of DESIGN.md, as pure decisions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from offload_bridge.streams.answers.policy import (
    AnswerContext,
    AnswerDecision,
    backoff_s,
    decide_answer,
    needs_delivery_check,
)
from offload_bridge.streams.offload_api import OffloadReply, OffloadUnreachable, parse_retry_after, read_reply


def _reply(status: int, code: str | None = None, retry_after: float | None = None) -> OffloadReply:
    return OffloadReply(status, None, code, "", retry_after, enveloped=code is not None)


PENDING = AnswerContext(case_status="INPUT_NEEDED", pending_input_request_id="req-1")


@pytest.mark.parametrize(
    ("result", "context", "decision"),
    [
        (_reply(202), PENDING, AnswerDecision.ACCEPTED),
        (_reply(409, "INPUT_REQUEST_MISMATCH"), PENDING, AnswerDecision.CONFLICT),
        (_reply(409, "INPUT_REQUEST_NOT_PENDING"), PENDING, AnswerDecision.CONFLICT),
        (_reply(409, "INPUT_REQUEST_NOT_PENDING"), AnswerContext(delivered=True), AnswerDecision.DUPLICATE),
        (_reply(409, "CASE_NOT_WAITING_FOR_INPUT"), AnswerContext(delivered=True), AnswerDecision.DUPLICATE),
        (_reply(409, "CASE_NOT_WAITING_FOR_INPUT"), PENDING, AnswerDecision.RETRY_NOT_WAITING),
        (
            _reply(409, "CASE_NOT_WAITING_FOR_INPUT"),
            AnswerContext(case_status="COMPLETED", pending_input_request_id="req-1"),
            AnswerDecision.CONFLICT,
        ),
        (
            _reply(409, "CASE_NOT_WAITING_FOR_INPUT"),
            AnswerContext(case_status="RUNNING"),
            AnswerDecision.CONFLICT,
        ),
        (
            _reply(409, "CASE_NOT_WAITING_FOR_INPUT"),
            AnswerContext(case_status="INPUT_NEEDED", pending_input_request_id="req-2"),
            AnswerDecision.CONFLICT,
        ),
        (_reply(429), PENDING, AnswerDecision.RETRY),
        (_reply(500, "INTERNAL_ERROR"), PENDING, AnswerDecision.RETRY),
        (_reply(502), PENDING, AnswerDecision.RETRY),
        (_reply(503), PENDING, AnswerDecision.RETRY),
        (_reply(504), PENDING, AnswerDecision.RETRY),
        (OffloadUnreachable("timeout", reached=True), PENDING, AnswerDecision.RETRY),
        (OffloadUnreachable("refused", reached=False), PENDING, AnswerDecision.RETRY),
        (_reply(400, "INVALID_REQUEST"), PENDING, AnswerDecision.REJECTED),
        (_reply(404, "CASE_NOT_FOUND"), PENDING, AnswerDecision.REJECTED),
        (_reply(401, "UNAUTHORIZED"), PENDING, AnswerDecision.DEAD_LETTER),
        (_reply(403, "FORBIDDEN"), PENDING, AnswerDecision.DEAD_LETTER),
    ],
)
def test_decide_answer(
    result: OffloadReply | OffloadUnreachable, context: AnswerContext, decision: AnswerDecision
) -> None:
    assert decide_answer(result, "req-1", context) is decision


def test_only_undelivered_409s_need_a_look_at_the_case() -> None:
    assert needs_delivery_check(_reply(409, "INPUT_REQUEST_NOT_PENDING"), PENDING)
    assert not needs_delivery_check(_reply(409, "INPUT_REQUEST_NOT_PENDING"), AnswerContext(delivered=True))
    assert not needs_delivery_check(_reply(503), PENDING)


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    rng = random.Random(7)
    delays = [backoff_s(attempt, 1.0, 30.0, rng=rng) for attempt in range(1, 9)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(30.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_s(1, 1.0, 30.0, retry_after_s=120.0, rng=rng) == 120.0
    assert backoff_s(8, 1.0, 30.0, retry_after_s=0.0, rng=rng) >= 15.0


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    later = datetime.now(UTC) + timedelta(seconds=90)
    parsed = parse_retry_after(format_datetime(later, usegmt=True))
    assert parsed is not None and 85 <= parsed <= 91
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_read_reply_takes_the_envelope_or_the_bare_body() -> None:
    enveloped = read_reply(
        httpx.Response(
            409, json={"ok": False, "error": {"code": "INPUT_REQUEST_MISMATCH", "message": "stale"}}
        )
    )
    assert (enveloped.error_code, enveloped.error_message, enveloped.enveloped) == (
        "INPUT_REQUEST_MISMATCH",
        "stale",
        True,
    )
    bare = read_reply(httpx.Response(502, text="Bad Gateway", headers={"retry-after": "3"}))
    assert (bare.error_code, bare.enveloped, bare.retry_after_s) == (None, False, 3.0)
    accepted = read_reply(httpx.Response(202, json={"ok": True, "data": {"accepted": True}}))
    assert accepted.ok and accepted.data == {"accepted": True}
