"""``case-requests.dlq`` by the one DLQ convention, on the real broker: list, redrive, ``--force``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from offload_bridge.dlq import CASE_REQUESTS_QUEUE, REDRIVEN_FROM_HEADER, list_dead_letters, redrive_all
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import DlqHeader
from offload_bridge.schemas.dlq import dlq_headers
from offload_bridge.settings import Settings
from offload_bridge.testing import consume, produce, settings_env
from offload_bridge.topics import CASE_REQUESTS, CASE_REQUESTS_DLQ


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", *args],
        env={**os.environ, **settings_env(settings)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _request(request_id: str) -> bytes:
    return json.dumps({"requestId": request_id, "goal": {"objective": "W-9"}}).encode()


def _partition(settings: Settings, request_id: str) -> int:
    return partition_for(request_id, settings.offload_topic_partitions)


def _dead_letter(settings: Settings, request_id: str, outcome: str, offset: int) -> None:
    headers = dlq_headers(
        outcome=outcome,
        error=f"{outcome} for the test",
        error_code="SERVER_ERROR" if outcome == "unknown" else None,
        http_status=500 if outcome == "unknown" else None,
        topic=f"{settings.offload_topic_prefix}case-requests",
        partition=0,
        offset=offset,
    )
    produce(settings, CASE_REQUESTS_DLQ, _request(request_id), key=request_id.encode(), headers=dict(headers))


def test_dlq_headers_are_the_answers_names_without_the_answers_own() -> None:
    headers = dict(
        dlq_headers(outcome="rejected", error="bad", topic="p.case-requests", partition=2, offset=7, at_ms=5)
    )
    assert headers == {
        "outcome": b"rejected",
        "error": b"bad",
        "error_code": b"",
        "http_status": b"",
        "original_topic": b"p.case-requests",
        "original_partition": b"2",
        "original_offset": b"7",
        "dead_lettered_at": b"5",
    }
    answers = dict(
        dlq_headers(
            outcome="dead_lettered", error="HTTP 500", topic="p.answers.retry", partition=0, offset=1,
            error_code="INTERNAL", http_status=500, answer_id="ans_1", attempt=8,
        )
    )  # fmt: skip
    assert set(answers) == {header.value for header in DlqHeader}
    assert answers["http_status"] == b"500" and answers["attempt"] == b"8"


def test_list_and_redrive_all_hold_unknown_back_and_skip_rejected(topics: Settings) -> None:
    _dead_letter(topics, "req-a", "dead_lettered", 1)
    _dead_letter(topics, "req-b", "rejected", 2)
    _dead_letter(topics, "req-c", "unknown", 3)
    letters = list_dead_letters(topics, CASE_REQUESTS_QUEUE)
    # Listed by (partition, offset): the order of the requestIds depends on their partitions.
    assert sorted((letter.subject, letter.outcome) for letter in letters) == [
        ("req-a", "dead_lettered"),
        ("req-b", "rejected"),
        ("req-c", "unknown"),
    ]
    assert {letter.subject: letter.headers[DlqHeader.ORIGINAL_OFFSET] for letter in letters}["req-c"] == "3"

    listing = _cli(topics, "dlq", "list", "--topic", "case-requests.dlq")
    assert listing.returncode == 0, listing.stderr
    # req-b and req-c share a partition (murmur2 of their keys), req-b written first.
    assert _partition(topics, "req-b") == _partition(topics, "req-c")
    where_c = f"partition={_partition(topics, 'req-c')} offset=1"
    listed = listing.stdout.splitlines()
    assert f"{where_c} request=req-c outcome=unknown error='unknown for the test'" in listed
    assert f"3 record(s) in {topics.offload_topic_prefix}case-requests.dlq" in listing.stdout
    as_json = _cli(topics, "dlq", "list", "--topic", "case-requests.dlq", "--json")
    assert sorted(json.loads(line)["key"] for line in as_json.stdout.splitlines()) == [
        "req-a",
        "req-b",
        "req-c",
    ]
    # The answers' queue is the default and is empty here.
    assert "0 record(s)" in _cli(topics, "dlq", "list").stdout

    first = redrive_all(topics, CASE_REQUESTS_QUEUE)
    assert [letter.subject for letter in first.redriven] == ["req-a"]
    assert [letter.subject for letter in first.skipped] == ["req-b"]
    assert [letter.subject for letter in first.held] == ["req-c"]
    again = redrive_all(topics, CASE_REQUESTS_QUEUE)
    assert again.redriven == again.skipped == again.held == []

    republished = consume(topics, CASE_REQUESTS, 1)
    assert [(r.key, r.value) for r in republished] == [(b"req-a", _request("req-a"))]
    dlq_name = f"{topics.offload_topic_prefix}case-requests.dlq"
    where = f"{_partition(topics, 'req-a')}:0"
    assert republished[0].headers[REDRIVEN_FROM_HEADER] == f"{dlq_name}:{where}".encode()
    assert consume(topics, CASE_REQUESTS, 2, timeout_s=3)[1:] == []


def test_an_unknown_request_is_redriven_only_with_force(topics: Settings) -> None:
    _dead_letter(topics, "req-u", "unknown", 4)

    held = _cli(topics, "dlq", "redrive", "--topic", "case-requests.dlq", "--request-id", "req-u")
    assert held.returncode == 1
    where = f"partition={_partition(topics, 'req-u')} offset=0"
    assert f"held     {where} request=req-u outcome=unknown (needs --force)" in held.stdout
    assert "--force" in held.stderr
    assert consume(topics, CASE_REQUESTS, 1, timeout_s=3) == []

    forced = _cli(
        topics, "dlq", "redrive", "--topic", "case-requests.dlq", "--request-id", "req-u", "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert f"redriven {where} request=req-u" in forced.stdout
    assert [(r.key, r.value) for r in consume(topics, CASE_REQUESTS, 1)] == [(b"req-u", _request("req-u"))]

    missing = _cli(topics, "dlq", "redrive", "--topic", "case-requests.dlq", "--request-id", "req-nope")
    assert missing.returncode == 1 and "no dead letter for request req-nope" in missing.stderr
    wrong = _cli(topics, "dlq", "redrive", "--topic", "case-requests.dlq", "--answer-id", "ans_1")
    assert wrong.returncode == 2 and "--request-id" in wrong.stderr


def test_redrive_all_with_force_takes_unknown_too(topics: Settings) -> None:
    _dead_letter(topics, "req-u", "unknown", 4)
    _dead_letter(topics, "req-r", "rejected", 5)

    result = _cli(topics, "dlq", "redrive", "--topic", "case-requests.dlq", "--all", "--force")

    assert result.returncode == 0, result.stderr
    assert "1 redriven, 1 skipped" in result.stdout
    assert [r.key for r in consume(topics, CASE_REQUESTS, 1)] == [b"req-u"]
