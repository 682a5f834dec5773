"""The case-requests agent as a real worker process against the real broker and the simulator."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path
from typing import Any

from pydantic import HttpUrl, SecretStr

from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.kafka.connection import kafka_consumer
from offload_bridge.kafka.reading import assign_all
from offload_bridge.schemas.case_requests import CaseRequestOutcome, CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY, case_body, simulator_process
from offload_bridge.testing import free_port, produce
from offload_bridge.topics import (
    CASE_EVENTS,
    CASE_REQUEST_OUTCOMES,
    CASE_REQUESTS,
    CASE_REQUESTS_DLQ,
    TopicMissing,
    topic_name,
)
from tests.ingress_support import read_topic
from tests.kafka_java import assert_placed_like_kafka
from tests.streams_support import Worker, running_workers


def with_offload(settings: Settings, base_url: str, **changes: Any) -> Settings:
    return settings.model_copy(
        update={
            "offload_base_url": HttpUrl(base_url),
            "offload_api_key": SecretStr(DEFAULT_API_KEY),
            **changes,
        }
    )


def sim_case_ids(sim: Any) -> list[str]:
    ids: list[str] = sim.http.get("/_sim/cases").json()["data"]["caseIds"]
    return ids


def test_the_same_request_three_times_creates_one_case(topics: Settings, tmp_path: Path) -> None:
    with simulator_process("--step-ms", "50") as sim:
        settings = with_offload(
            topics, sim.base_url, offload_public_webhook_url=HttpUrl("http://127.0.0.1:9/hooks/offload")
        )
        worker = Worker(settings, tmp_path)
        with running_workers(worker), CaseRequestSubmitter(settings) as submitter:
            body = case_body(scenario="input_then_complete", clientReferenceId="po-77")
            first = submitter.publish(body, request_id="req-1")
            created = submitter.wait_for_outcome(first, timeout_s=60)
            assert created.outcome is CaseRequestOutcomeKind.CREATED, created
            assert created.httpStatus == 201 and created.caseId is not None
            for _ in range(2):
                submitter.publish(body, request_id="req-1")
                again = submitter.wait_for_outcome("req-1", timeout_s=60)
                assert again.outcome is CaseRequestOutcomeKind.DUPLICATE, again
                assert again.caseId == created.caseId
            assert sim_case_ids(sim) == [created.caseId]
            truth = sim.truth(created.caseId)
            # No clientWebhookUrl in the request: OFFLOAD_PUBLIC_WEBHOOK_URL is used.
            assert truth["clientWebhookUrl"] == "http://127.0.0.1:9/hooks/offload"
            assert truth["clientReferenceId"] == "po-77"

            # The state table knows the case from birth, through the bridge's case.created.
            state = worker.wait_case(created.caseId, lambda state: state["eventCount"] >= 1)
            assert state["firstSeenAt"] >= created.at - 60_000
            announced = [
                record for record in read_topic(settings, CASE_EVENTS)
                if record.headers.get("source") == b"bridge"
            ]  # fmt: skip
            assert len(announced) == 1
            event = json.loads(announced[0].value or b"")
            assert event["event_type"] == "case.created"
            assert event["event_id"] == f"evt_{created.caseId}_case_created_{event['timestamp']}"
            assert event["data"]["status"] == "CREATED"
            assert event["data"]["clientReferenceId"] == "po-77"
            assert announced[0].key == created.caseId.encode()

            # The CLI publishes a file, waits, and says what happened; the same file again is a duplicate.
            request_file = tmp_path / "case.json"
            request_file.write_text(json.dumps(case_body(scenario="complete", clientReferenceId="po-78")))
            by_cli = worker.run_cli("create-case", str(request_file), "--wait", "--timeout", "60")
            assert by_cli.returncode == 0, by_cli.stderr
            assert "published requestId=req_" in by_cli.stdout and "created" in by_cli.stdout
            again_by_cli = worker.run_cli("create-case", str(request_file), "--wait", "--timeout", "60")
            assert again_by_cli.returncode == 0 and "duplicate" in again_by_cli.stdout
            assert len(sim_case_ids(sim)) == 2


def test_refused_requests_end_rejected_or_dead_lettered(topics: Settings, tmp_path: Path) -> None:
    with simulator_process("--step-ms", "50") as sim:
        settings = with_offload(
            topics, sim.base_url, offload_retry_base_s=0.05, offload_retry_max_s=0.2,
            offload_case_request_max_attempts=3,
        )  # fmt: skip
        worker = Worker(settings, tmp_path)
        with running_workers(worker), CaseRequestSubmitter(settings) as submitter:
            # Not a case request at all, and one whose key is not its requestId: rejected, DLQ.
            produce(settings, CASE_REQUESTS, b"{not json", key=b"req-bad")
            wrong_key = json.dumps({**case_body(), "requestId": "req-x"}).encode()
            produce(settings, CASE_REQUESTS, wrong_key, key=b"req-y")
            for request_id in ("req-bad", "req-y"):
                outcome = submitter.wait_for_outcome(request_id, timeout_s=60)
                assert outcome.outcome is CaseRequestOutcomeKind.REJECTED
                assert outcome.errorCode == "INVALID_REQUEST"

            # Offload refuses it (the simulator knows no such scenario): 400 -> rejected.
            refused = submitter.publish(case_body(scenario="no_such_scenario"), request_id="req-400")
            outcome = submitter.wait_for_outcome(refused, timeout_s=60)
            assert (outcome.outcome, outcome.httpStatus, outcome.errorCode) == (
                CaseRequestOutcomeKind.REJECTED, 400, "INVALID_REQUEST"
            )  # fmt: skip

            # 503: Offload may have created the case, so it is never sent again: unknown, in the DLQ.
            sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "503"}})
            progress: list[Any] = []
            failing = submitter.publish(case_body(), request_id="req-503")
            outcome = submitter.wait_for_outcome(failing, timeout_s=60, on_progress=progress.append)
            assert outcome.outcome is CaseRequestOutcomeKind.UNKNOWN, outcome
            assert outcome.httpStatus == 503 and "may have created the case" in outcome.message
            assert progress == []

            # The monthly cap: rejected with the code, no retry.
            sim.set_faults(endpoints={}, usage_limit=0)
            capped = submitter.publish(case_body(), request_id="req-cap")
            progress.clear()
            outcome = submitter.wait_for_outcome(capped, timeout_s=60, on_progress=progress.append)
            assert (outcome.outcome, outcome.httpStatus, outcome.errorCode) == (
                CaseRequestOutcomeKind.REJECTED, 429, "USAGE_LIMIT_REACHED"
            )  # fmt: skip
            assert progress == []
            assert sim_case_ids(sim) == []

            dlq = read_topic(settings, CASE_REQUESTS_DLQ)
            by_key = {record.key: record for record in dlq}
            assert set(by_key) == {b"req-bad", b"req-y", b"req-400", b"req-503", b"req-cap"}
            assert by_key[b"req-bad"].value == b"{not json"
            assert by_key[b"req-503"].headers["outcome"] == b"unknown"
            assert by_key[b"req-503"].headers["original_topic"].endswith(b"case-requests")
            assert_placed_like_kafka(
                settings, expect=("case-requests", "case-requests.dlq", "case-request-outcomes")
            )


def test_a_refused_connection_is_retried_and_creates_one_case(topics: Settings, tmp_path: Path) -> None:
    port = free_port()
    settings = with_offload(
        topics, f"http://127.0.0.1:{port}", offload_retry_base_s=1.0, offload_retry_max_s=2.0,
        offload_case_request_max_attempts=30,
    )  # fmt: skip
    worker = Worker(settings, tmp_path)
    with running_workers(worker), CaseRequestSubmitter(settings) as submitter:
        request_id = submitter.publish(case_body(), request_id="req-refused")
        progress: list[Any] = []
        # Nothing listens yet: the first attempts are refused, provably never reaching Offload.
        deadline = time.monotonic() + 60
        while not progress and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                submitter.wait_for_outcome(request_id, timeout_s=2, on_progress=progress.append)
        assert progress and progress[0].outcome is CaseRequestOutcomeKind.RETRYING
        with simulator_process("--step-ms", "50", port=port) as sim:
            outcome = submitter.wait_for_outcome(request_id, timeout_s=60)
            assert outcome.outcome is CaseRequestOutcomeKind.CREATED, outcome
            assert sim_case_ids(sim) == [outcome.caseId]


def _changelog_shows_pending(settings: Settings, request_id: str, timeout_s: float) -> None:
    name = f"{settings.worker_app_id}-case_requests-changelog"
    consumer = kafka_consumer(settings)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(TopicMissing):  # the worker creates its changelog when it starts
                consumer.seek_to_beginning(*assign_all(consumer, name))
                for records in consumer.poll(timeout_ms=500).values():
                    for record in records:
                        value = json.loads(record.value or b"{}")
                        if record.key == request_id.encode() and value.get("status") == "pending":
                            return
            time.sleep(0.1)
        raise AssertionError(f"no durable pending record for {request_id} in {name}")
    finally:
        consumer.close()


def test_a_crash_during_the_call_ends_unknown_not_a_second_case(topics: Settings, tmp_path: Path) -> None:
    with simulator_process("--step-ms", "50") as sim:
        sim.set_faults(latency_ms=4000)
        settings = with_offload(topics, sim.base_url, offload_http_timeout_s=60.0)
        worker = Worker(settings, tmp_path)
        with running_workers(worker), CaseRequestSubmitter(settings) as submitter:
            request_id = submitter.publish(case_body(), request_id="req-crash")
            _changelog_shows_pending(settings, request_id, timeout_s=30)
            # Offload holds the call 4 s; freeze the worker only once the call has reached it.
            sim.wait_in_flight("create_case", timeout_s=30)
            # Freeze the worker while POST /cases is in flight, so its connection stays open and Offload
            # finishes the call (the simulator drops a request whose client went away); then SIGKILL it
            # before it can read the answer.
            worker.service.signal(signal.SIGSTOP)
            deadline = time.monotonic() + 30
            while not sim_case_ids(sim) and time.monotonic() < deadline:
                time.sleep(0.2)
            worker.service.kill()
            assert len(sim_case_ids(sim)) == 1, "the call in flight reached Offload"
            sim.set_faults(latency_ms=0)
            worker.start()
            # The killed member keeps its partitions until its session times out, then recovery runs.
            outcome = submitter.wait_for_outcome(request_id, timeout_s=240)
            assert outcome.outcome is CaseRequestOutcomeKind.UNKNOWN, outcome
            assert "in flight" in outcome.message
            # Dead-lettered with its context, so that an operator finds it and redrives it only on purpose.
            (letter,) = read_topic(settings, CASE_REQUESTS_DLQ)
            assert letter.key == request_id.encode()
            assert letter.headers["outcome"] == b"unknown"
            assert letter.headers["error"].decode() == outcome.message
            assert letter.headers["original_topic"].decode() == topic_name(CASE_REQUESTS, settings)
            time.sleep(2)
            assert len(sim_case_ids(sim)) == 1, "never sent again"
            # Published once more later, it stays settled without a call.
            submitter.publish(case_body(), request_id=request_id)
            again = submitter.wait_for_outcome(request_id, timeout_s=60)
            assert again.outcome is CaseRequestOutcomeKind.DUPLICATE
            assert "ended unknown" in again.message
            assert len(sim_case_ids(sim)) == 1


def _terminal_outcomes(settings: Settings, request_id: str) -> list[CaseRequestOutcome]:
    outcomes = [
        CaseRequestOutcome.model_validate_json(record.value or b"")
        for record in read_topic(settings, CASE_REQUEST_OUTCOMES)
        if record.key == request_id.encode()
    ]
    return [outcome for outcome in outcomes if outcome.outcome is not CaseRequestOutcomeKind.RETRYING]


def test_a_dead_lettered_request_redriven_creates_its_case_once(topics: Settings, tmp_path: Path) -> None:
    with simulator_process("--step-ms", "50") as sim:
        settings = with_offload(
            topics, sim.base_url, offload_retry_base_s=0.05, offload_retry_max_s=0.2,
            offload_case_request_max_attempts=2,
        )  # fmt: skip
        worker = Worker(settings, tmp_path)
        with running_workers(worker), CaseRequestSubmitter(settings) as submitter:
            # Throttled on every attempt: dead-lettered after the budget.
            sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": "429"}})
            request_id = submitter.publish(case_body(), request_id="req-redrive")
            outcome = submitter.wait_for_outcome(request_id, timeout_s=60)
            assert outcome.outcome is CaseRequestOutcomeKind.DEAD_LETTERED, outcome
            (letter,) = read_topic(settings, CASE_REQUESTS_DLQ)
            assert (letter.key, letter.headers["outcome"]) == (b"req-redrive", b"dead_lettered")

            sim.set_faults(endpoints={})
            redrive = worker.run_cli("dlq", "redrive", "--topic", "case-requests.dlq", "--all")
            assert redrive.returncode == 0, redrive.stderr
            assert "1 redriven" in redrive.stdout

            deadline = time.monotonic() + 60
            while len(ended := _terminal_outcomes(settings, request_id)) < 2:
                assert time.monotonic() < deadline, f"no outcome for the redriven request: {ended}"
                time.sleep(0.2)
            dead, created = ended
            assert (dead.outcome, created.outcome) == (
                CaseRequestOutcomeKind.DEAD_LETTERED, CaseRequestOutcomeKind.CREATED
            )  # fmt: skip
            assert sim_case_ids(sim) == [created.caseId]

            # A second redrive finds nothing new; the request published again stays one case.
            again = worker.run_cli("dlq", "redrive", "--topic", "case-requests.dlq", "--all")
            assert again.returncode == 0 and "0 redriven" in again.stdout, again.stdout
            submitter.publish(case_body(), request_id=request_id)
            duplicate = submitter.wait_for_outcome(request_id, timeout_s=60)
            assert (duplicate.outcome, duplicate.caseId) == (CaseRequestOutcomeKind.DUPLICATE, created.caseId)
            assert sim_case_ids(sim) == [created.caseId]
