"""The streams worker as a real process against the real broker: fold, query API, case-state topic."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.settings import Settings
from offload_bridge.testing import consume, free_port, produce
from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID, CASE_STATE
from tests.ingress_support import JSON, running_ingress
from tests.streams_support import (
    SEED_COMPLETED,
    SEED_INPUT_NEEDED,
    Worker,
    cases_on_every_partition,
    event_body,
    publish_webhook,
    running_workers,
    wait_for_spread,
)

SEED_CASE = "4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f"


def test_seed_webhooks_posted_to_the_ingress_become_the_documented_state(
    topics: Settings, tmp_path: Path
) -> None:
    worker = Worker(topics, tmp_path)
    with running_workers(worker), running_ingress(topics, tmp_path) as ingress:
        posted_from = int(time.time() * 1000)
        for body in (SEED_INPUT_NEEDED, SEED_COMPLETED):
            posted = httpx.post(f"{ingress.url}/webhooks/offload", content=body, headers=JSON, timeout=30)
            assert posted.status_code == 200, posted.text
        posted_until = int(time.time() * 1000)

        waiting = worker.wait_case(SEED_CASE, lambda state: state["eventCount"] == 1)
        assert waiting["status"] == "INPUT_NEEDED"
        assert waiting["clientReferenceId"] == "vendor_2048"
        assert waiting["channel"] == "EMAIL"
        assert waiting["attemptCount"] == 1
        assert waiting["attachments"] == []
        assert waiting["inputRequest"] == {
            "id": "c8c6a7ca-a913-4d13-8cd8-5887efb0531c",
            "question": "The vendor asked whether a signed PDF is acceptable. How should I respond?",
            "status": "PENDING",
            "requestedAt": 1774131900300,
        }
        assert waiting["lastEventId"] == f"evt_{SEED_CASE}_case_input_needed_1774131900300"
        assert waiting["lastEventType"] == "case.input_needed"
        assert waiting["lastEventAt"] == 1774131900300
        assert waiting["firstSeenAt"] == waiting["updatedAt"], "one event: first seen when last updated"
        assert posted_from <= waiting["firstSeenAt"] <= posted_until, "the ingress's received_at"
        assert waiting["answers"] == {}

        done = worker.wait_case("case_123", lambda state: state["eventCount"] == 1)
        assert done["status"] == "COMPLETED"
        assert done["resultStatus"] == "goal_achieved"
        assert done["result"] == {
            "signedW9Received": True,
            "taxId": "12-3456789",
            "documentUrl": "https://files.example.com/w9.pdf",
        }
        assert done["attemptCount"] == 2
        assert done["inputRequest"] is None

        metrics = worker.get("/metrics").text
        assert 'offload_worker_case_events_total{kind="applied"} 2.0' in metrics
        assert 'offload_worker_answers_total{kind="accepted"} 0.0' in metrics
        # Both events are handled: once reported, the lag of their partitions is 0.
        lag_of_events = re.compile(
            rf'offload_worker_consumer_lag{{partition="\d+",topic="{re.escape(topics.offload_topic_prefix)}'
            r'case-events"} (\S+)'
        )
        deadline = time.monotonic() + 30
        while not lag_of_events.search(metrics) and time.monotonic() < deadline:
            time.sleep(0.5)
            metrics = worker.get("/metrics").text
        assert {float(value) for value in lag_of_events.findall(metrics)} == {0.0}, metrics

        listed = worker.get("/cases", params={"status": "INPUT_NEEDED"}).json()
        assert listed["ok"] is True
        assert [case["caseId"] for case in listed["data"]["cases"]] == [SEED_CASE]
        assert listed["data"]["partitions"] == list(range(topics.offload_topic_partitions))
        assert listed["data"]["complete"] is True

        missing = worker.get_case("no-such-case")
        assert missing.status_code == 404
        assert missing.json() == {
            "ok": False,
            "error": {"code": "CASE_NOT_FOUND", "message": "no event of case no-such-case was seen"},
        }

        # Every change is on the compacted case-state topic, keyed by caseId.
        published = consume(topics, CASE_STATE, 2)
        by_key = {record.key: json.loads(record.value or b"") for record in published}
        assert by_key[SEED_CASE.encode()] == waiting
        assert by_key[b"case_123"] == done

        shown = worker.run_cli("case", SEED_CASE)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout) == waiting
        unknown = worker.run_cli("case", "no-such-case")
        assert unknown.returncode != 0
        assert unknown.stderr.strip().splitlines() == [
            "offload-bridge: CASE_NOT_FOUND: no event of case no-such-case was seen"
        ]
    assert worker.service.process is not None
    assert worker.service.process.returncode == 0, "SIGTERM should stop the worker cleanly"


def test_duplicates_and_out_of_order_events(topics: Settings, tmp_path: Path) -> None:
    worker = Worker(topics, tmp_path)
    case = "case-ooo"
    question = event_body(
        case, "case.input_needed", 2_000, "INPUT_NEEDED", attemptCount=1, clientReferenceId="ref-1",
        inputRequest="Accept Monday?", inputRequestId="ir-1", inputRequestStatus="PENDING",
        inputRequestedAt=2_000,
    )  # fmt: skip
    completed = event_body(
        case, "case.completed", 3_000, "COMPLETED", attemptCount=2, resultStatus="goal_achieved",
        result={"ok": True},
    )  # fmt: skip
    older_question = event_body(
        case, "case.input_needed", 1_000, "INPUT_NEEDED", attemptCount=1, inputRequest="Old question?",
        inputRequestId="ir-0", inputRequestedAt=1_000,
    )  # fmt: skip
    with running_workers(worker):
        publish_webhook(topics, question)
        publish_webhook(topics, completed)
        publish_webhook(topics, question)  # duplicate, after a newer event
        publish_webhook(topics, completed)  # duplicate of the newest
        publish_webhook(topics, older_question)  # out of order: older than what we know
        # An unknown type moves the status only when newer and the status is known.
        publish_webhook(topics, event_body(case, "case.reopened", 2_500, "RUNNING"))
        publish_webhook(topics, event_body(case, "case.something_new", 4_000, "PAUSED_FOR_AUDIT"))
        publish_webhook(topics, event_body(case, "case.archived", 5_000, "COMPLETED", attemptCount=9))

        state = worker.wait_case(case, lambda state: state["eventCount"] == 6)
        assert state["status"] == "COMPLETED"
        assert state["resultStatus"] == "goal_achieved"
        assert state["result"] == {"ok": True}
        assert state["inputRequest"] is None
        assert state["attemptCount"] == 2, "an unknown event type moves only the status"
        assert state["clientReferenceId"] == "ref-1"
        assert state["lastEventId"] == f"evt_{case}_case_archived_5000"
        assert state["lastEventAt"] == 5_000
        assert state["staleEventCount"] == 2  # older_question and case.reopened
        counters = worker.stats()
        assert counters["duplicate"] == 2
        assert counters["stale"] == 2
        assert counters["ignored"] == 1  # PAUSED_FOR_AUDIT is no known status
        assert counters["applied"] == 3
        # Nothing re-published for a duplicate: one case-state record per distinct event.
        assert len(consume(topics, CASE_STATE, 7, timeout_s=10)) == 6


def test_poison_records_do_not_stop_later_events(topics: Settings, tmp_path: Path) -> None:
    worker = Worker(topics, tmp_path)
    case = "case-poison"
    key = case.encode()
    with running_workers(worker):
        publish_webhook(topics, event_body(case, "case.input_needed", 1_000, "INPUT_NEEDED",
                                           inputRequest="Q?", inputRequestId="ir-1"))  # fmt: skip
        worker.wait_case(case, lambda state: state["status"] == "INPUT_NEEDED")
        partition, _ = produce(topics, CASE_EVENTS, b"this is not json", key=key)
        produce(topics, CASE_EVENTS, b'{"event_id": "x", "event_type": "case.completed"}', key=key)
        produce(topics, CASE_EVENTS, b"[1, 2, 3]", key=key)
        # Valid, but filed under another case's key: it would land in a partition not owning its case.
        produce(topics, CASE_EVENTS, event_body("other-case", "case.failed", 1_500, "FAILED"), key=key)
        later, _ = publish_webhook(
            topics, event_body(case, "case.failed", 2_000, "FAILED", resultStatus="max_retries")
        )
        assert later == partition, "the poison records sit before the later event in its partition"

        state = worker.wait_case(case, lambda state: state["status"] == "FAILED")
        assert state["resultStatus"] == "max_retries"
        assert state["inputRequest"] is None
        assert worker.stats()["invalid"] == 4

        quarantined = consume(topics, CASE_EVENTS_INVALID, 4)
        assert [record.value for record in quarantined][:1] == [b"this is not json"]
        for record in quarantined:
            assert record.key == key
            assert record.headers["error"]
            assert record.headers["original_topic"] == f"{topics.offload_topic_prefix}case-events".encode()
            assert record.headers["original_partition"] == str(partition).encode()
        assert worker.service.process is not None and worker.service.process.poll() is None
        assert "OFFLOAD_API_KEY is not set" in worker.service.log_tail(400), "no key: said at start"


def test_state_survives_sigkill_and_restart(topics: Settings, tmp_path: Path) -> None:
    cases = [f"case-kill-{n}" for n in range(20)]
    first = Worker(topics, tmp_path, name="first")
    try:
        first.start()
        for n, case in enumerate(cases):
            publish_webhook(topics, event_body(case, "case.input_needed", 1_000 + n, "INPUT_NEEDED",
                                               inputRequest=f"Q{n}?", inputRequestId=f"ir-{n}"))  # fmt: skip
        before = {case: first.wait_case(case, lambda state: state["eventCount"] == 1) for case in cases}
        first.service.kill()
    finally:
        first.service.stop()

    second = Worker(topics, tmp_path, name="second", port=first.port)
    with running_workers(second):
        for case in cases:
            # Same state, nothing folded twice (a re-read uncommitted event is a duplicate).
            assert second.wait_case(case, lambda state: True) == before[case]
        publish_webhook(topics, event_body(cases[0], "case.completed", 9_000, "COMPLETED"))
        after = second.wait_case(cases[0], lambda state: state["status"] == "COMPLETED")
        assert after["eventCount"] == 2
        assert after["firstSeenAt"] == before[cases[0]]["firstSeenAt"]


def test_two_workers_answer_for_every_case(topics: Settings, tmp_path: Path) -> None:
    # Without standby copies a worker holds only its own partitions' cases, so an answer for any other
    # case can only come from routing the request to its owner.
    settings = topics.model_copy(update={"offload_worker_standby_replicas": 0})
    partitions = settings.offload_topic_partitions
    one = Worker(settings, tmp_path, name="one")
    two = Worker(settings, tmp_path, name="two")
    cases = cases_on_every_partition("case-pair", partitions)
    with running_workers(one, two):
        owned = wait_for_spread([one, two], partitions)
        for worker in (one, two):
            foreign = [case for case in cases if partition_for(case, partitions) not in owned[worker.url]]
            assert foreign, f"{worker.url} must be asked for cases it does not own"

        for n, case in enumerate(cases):
            body = event_body(case, "case.completed", 1_000 + n, "COMPLETED", resultStatus="goal_achieved",
                              result={"n": n})  # fmt: skip
            assert publish_webhook(settings, body)[0] == partition_for(case, partitions)
        owner_of = {partition: worker for worker in (one, two) for partition in owned[worker.url]}
        for n, case in enumerate(cases):
            owner = owner_of[partition_for(case, partitions)]
            state = owner.wait_case(case, lambda state: state["status"] == "COMPLETED")
            assert state["result"] == {"n": n}
            for worker in (one, two):
                answer = worker.get_case(case)
                assert answer.status_code == 200, f"{worker.url} for {case}: {answer.text}"
                assert answer.json()["data"] == state
        for worker in (one, two):
            missing = worker.get_case("never-seen")
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "CASE_NOT_FOUND"


def test_worker_without_broker_fails_in_one_line(settings: Settings, tmp_path: Path) -> None:
    unreachable = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    worker = Worker(unreachable, tmp_path)
    result = worker.run_cli("worker")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("offload-bridge: Kafka at 127.0.0.1:"), result.stderr
