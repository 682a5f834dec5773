"""The answering teams' API and CLI against the real broker: publish, wait for outcomes, DLQ redrive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from pydantic import ValidationError

from offload_bridge.answers import AnswerSubmitter, OutcomeTimeout
from offload_bridge.dlq import REDRIVEN_FROM_HEADER, list_dead_letters, redrive_all, redrive_subject
from offload_bridge.schemas.answers import AnswerOutcome, DlqHeader, Outcome, default_answer_id
from offload_bridge.settings import Settings
from offload_bridge.testing import consume, produce, settings_env
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS, ANSWERS_DLQ


def _report(settings: Settings, answer_id: str, outcome: Outcome, case_id: str = "case-1") -> None:
    record = AnswerOutcome(
        answerId=answer_id, caseId=case_id, inputRequestId="req-1", outcome=outcome, attempt=1
    )
    produce(settings, ANSWER_OUTCOMES, record.model_dump_json().encode(), key=case_id.encode())


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", *args],
        env={**os.environ, **settings_env(settings)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_publish_keys_by_case_and_derives_a_stable_answer_id(topics: Settings) -> None:
    with AnswerSubmitter(topics) as submitter:
        first = submitter.publish("case-1", "req-1", "  Yes, a signed PDF is fine. ")
        again = submitter.publish("case-1", "req-1", "Yes, a signed PDF is fine.")
        other = submitter.publish("case-1", "req-1", "No.", submitted_by="ap-team")

    assert first == again == default_answer_id("case-1", "req-1", "Yes, a signed PDF is fine.")
    assert other != first
    records = consume(topics, ANSWERS, 3)
    assert [r.key for r in records] == [b"case-1"] * 3
    bodies = [json.loads(r.value or b"") for r in records]
    assert bodies[0] == {
        "caseId": "case-1",
        "inputRequestId": "req-1",
        "providedContext": "Yes, a signed PDF is fine.",
        "answerId": first,
    }
    assert bodies[2]["submittedBy"] == "ap-team"


def test_blank_fields_are_refused_before_publishing(topics: Settings) -> None:
    with AnswerSubmitter(topics) as submitter, pytest.raises(ValidationError):
        submitter.publish("case-1", "req-1", "   ")
    result = _cli(topics, "answer", "case-1", " ", "text")
    assert result.returncode == 2
    assert "inputRequestId must not be blank" in result.stderr
    assert consume(topics, ANSWERS, 1, timeout_s=3) == []


def test_wait_returns_the_first_terminal_outcome_after_publishing(topics: Settings) -> None:
    progress: list[AnswerOutcome] = []
    with AnswerSubmitter(topics) as submitter:
        answer_id = default_answer_id("case-1", "req-1", "Yes")
        _report(topics, answer_id, Outcome.CONFLICT)  # an earlier delivery's outcome: not this one
        submitter.publish("case-1", "req-1", "Yes")

        def worker() -> None:
            time.sleep(0.5)
            _report(topics, "ans_someone_else", Outcome.REJECTED)
            _report(topics, answer_id, Outcome.RETRYING)
            _report(topics, answer_id, Outcome.ACCEPTED)

        thread = threading.Thread(target=worker)
        thread.start()
        outcome = submitter.wait_for_outcome(answer_id, timeout_s=30, on_progress=progress.append)
        thread.join()

    assert outcome.outcome is Outcome.ACCEPTED
    assert [p.outcome for p in progress] == [Outcome.RETRYING]


def test_wait_for_an_answer_published_elsewhere_reads_the_latest_terminal_outcome(topics: Settings) -> None:
    _report(topics, "ans_x", Outcome.ACCEPTED)
    _report(topics, "ans_x", Outcome.DUPLICATE)
    with AnswerSubmitter(topics) as submitter:
        assert submitter.wait_for_outcome("ans_x", timeout_s=30).outcome is Outcome.DUPLICATE


def test_wait_times_out_without_an_outcome(topics: Settings) -> None:
    with AnswerSubmitter(topics) as submitter:
        answer_id = submitter.publish("case-1", "req-1", "Yes")
        with pytest.raises(OutcomeTimeout):
            submitter.wait_for_outcome(answer_id, timeout_s=1.5)
    result = _cli(topics, "answer", "case-1", "req-1", "Yes", "--wait", "--timeout", "1.5")
    assert result.returncode == 3
    assert f"published answerId={answer_id}" in result.stdout


def _dead_letter(settings: Settings, answer_id: str, outcome: Outcome, value: bytes) -> None:
    headers = {
        DlqHeader.ANSWER_ID.value: answer_id.encode(),
        DlqHeader.OUTCOME.value: outcome.value.encode(),
        DlqHeader.ERROR.value: b"HTTP 401 UNAUTHORIZED",
        DlqHeader.ORIGINAL_TOPIC.value: b"answers",
    }
    produce(settings, ANSWERS_DLQ, value, key=b"case-9", headers=headers)


def test_redrive_all_republishes_dead_lettered_records_once(topics: Settings) -> None:
    _dead_letter(topics, "ans_a", Outcome.DEAD_LETTERED, b'{"caseId":"case-9","answerId":"ans_a"}')
    _dead_letter(topics, "ans_b", Outcome.REJECTED, b"not json at all")
    _dead_letter(topics, "ans_c", Outcome.DEAD_LETTERED, b'{"caseId":"case-9","answerId":"ans_c"}')
    assert [letter.answer_id for letter in list_dead_letters(topics)] == ["ans_a", "ans_b", "ans_c"]

    first = redrive_all(topics)
    second = redrive_all(topics)

    assert [letter.answer_id for letter in first.redriven] == ["ans_a", "ans_c"]
    assert [letter.answer_id for letter in first.skipped] == ["ans_b"]
    assert second.redriven == [] and second.skipped == []
    republished = consume(topics, ANSWERS, 2)
    assert [r.value for r in republished] == [
        b'{"caseId":"case-9","answerId":"ans_a"}',
        b'{"caseId":"case-9","answerId":"ans_c"}',
    ]
    assert all(r.key == b"case-9" for r in republished)
    assert all(REDRIVEN_FROM_HEADER in r.headers for r in republished)
    assert consume(topics, ANSWERS, 3, timeout_s=3)[2:] == []


def test_redrive_by_answer_id_and_the_cli(topics: Settings) -> None:
    _dead_letter(topics, "ans_b", Outcome.REJECTED, b"not json at all")
    assert [letter.answer_id for letter in redrive_subject(topics, "ans_b").redriven] == ["ans_b"]
    assert [r.value for r in consume(topics, ANSWERS, 1)] == [b"not json at all"]

    listing = _cli(topics, "dlq", "list")
    assert listing.returncode == 0 and "answer=ans_b outcome=rejected" in listing.stdout
    missing = _cli(topics, "dlq", "redrive", "--answer-id", "ans_nope")
    assert missing.returncode == 1 and "no dead letter for answer ans_nope" in missing.stderr
