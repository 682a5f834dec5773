"""The topic registry (and so ``schemas/asyncapi.yaml``) declares every header the services write: the
ingress, the worker's agents and the CLI's redrive run for real, and every record they wrote is read back."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx

from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.case_watch import CaseWatcher
from offload_bridge.dlq import (
    ANSWERS_QUEUE,
    CASE_REQUESTS_QUEUE,
    CASE_WATCH_QUEUE,
    redrive_all,
    redrive_subject,
)
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body, simulator_process
from offload_bridge.testing import Record, produce
from offload_bridge.topics import (
    ALL_TOPICS,
    ANSWER_OUTCOMES,
    ANSWERS,
    ANSWERS_DLQ,
    CASE_EVENTS,
    CASE_EVENTS_INVALID,
    CASE_REQUEST_OUTCOMES,
    CASE_REQUESTS,
    CASE_REQUESTS_DLQ,
    CASE_WATCH_DLQ,
    TopicSpec,
)
from tests.ingress_support import JSON, event_body, read_topic, running_ingress
from tests.streams_support import Worker, running_workers, wait_for
from tests.test_case_requests_worker import with_offload

# Every call to Offload fails fast and is given up after two attempts, so retries and dead letters happen.
FAST_GIVE_UP = {
    "offload_answer_max_attempts": 2,
    "offload_case_request_max_attempts": 2,
    "offload_retry_base_s": 0.1,
    "offload_retry_max_s": 0.2,
}
OUTAGE = {
    "endpoints": {
        "provide_input": {"rate": 1.0, "error": "503"},
        "create_case": {"rate": 1.0, "error": "429"},
    }
}


ALL_BY_NAME = {spec.name: spec for spec in ALL_TOPICS}


def _outcomes(settings: Settings, spec: TopicSpec, field: str, subject: str) -> list[str]:
    """The outcomes so far of one answer (field caseId) or case request (field requestId)."""
    values = [json.loads(record.value) for record in read_topic(settings, spec) if record.value]
    return [value["outcome"] for value in values if value.get(field) == subject]


def test_every_header_the_services_write_is_declared_for_its_topic(topics: Settings, tmp_path: Path) -> None:
    with simulator_process("--step-ms", "200") as sim:
        settings = with_offload(topics, sim.base_url, **FAST_GIVE_UP)
        worker = Worker(settings, tmp_path)
        with running_workers(worker), running_ingress(topics, tmp_path) as ingress:
            hook = f"{ingress.url}/webhooks/offload"
            # The ingress: an event, and an authenticated body that fails the schema (quarantined).
            assert httpx.post(hook, json=event_body(), headers=JSON).status_code == 200
            quarantined = httpx.post(hook, json={"event_id": "evt_x", "data": {}}, headers=JSON)
            assert quarantined.status_code == 202
            # The worker: a case-events record that is no event (quarantined with where it came from).
            produce(topics, CASE_EVENTS, b"not an event", key=b"case-poison")

            # The case-request agent creates a case whose webhooks come to the ingress; the answer agents
            # deliver its answer.
            with CaseRequestSubmitter(topics) as requests:
                request_id = requests.publish(case_body(hook, scenario="input_then_complete"))
                created = requests.wait_for_outcome(request_id, timeout_s=60)
            assert created.outcome == "created" and created.caseId is not None
            case_id = created.caseId
            state = worker.wait_case(case_id, lambda state: state["inputRequest"] is not None)
            answer = {
                "caseId": case_id,
                "inputRequestId": state["inputRequest"]["id"],
                "providedContext": "A signed PDF is fine.",
            }
            produce(topics, ANSWERS, json.dumps(answer).encode(), key=case_id.encode())
            wait_for(lambda: "accepted" in _outcomes(topics, ANSWER_OUTCOMES, "caseId", case_id))

            # An outage: an answer and a case request are retried, then dead-lettered.
            sim.set_faults(**OUTAGE)
            lost = {"caseId": f"case-{uuid.uuid4()}", "inputRequestId": "ir-1", "providedContext": "yes"}
            produce(topics, ANSWERS, json.dumps(lost).encode(), key=lost["caseId"].encode())
            with CaseRequestSubmitter(topics) as requests:
                throttled = requests.publish(case_body(hook))
            wait_for(lambda: "dead_lettered" in _outcomes(topics, ANSWER_OUTCOMES, "caseId", lost["caseId"]))
            wait_for(
                lambda: "dead_lettered" in _outcomes(topics, CASE_REQUEST_OUTCOMES, "requestId", throttled)
            )
            # A request that is no request and a watch of a case Offload does not know: straight to the DLQs.
            produce(topics, CASE_REQUESTS, b"not a request", key=b"req-bad")
            with CaseWatcher(topics) as watcher:
                watcher.track("no-such-case")
            wait_for(lambda: len(read_topic(topics, CASE_REQUESTS_DLQ)) == 2)
            wait_for(lambda: len(read_topic(topics, CASE_WATCH_DLQ)) == 1)

            # Redriven (the CLI's code) once Offload is back: the copies carry where they came from.
            sim.set_faults(endpoints={})
            redrive_all(topics, ANSWERS_QUEUE)
            redrive_all(topics, CASE_REQUESTS_QUEUE)
            redrive_subject(topics, "no-such-case", CASE_WATCH_QUEUE, force=True)
            wait_for(lambda: "rejected" in _outcomes(topics, ANSWER_OUTCOMES, "caseId", lost["caseId"]))
            wait_for(lambda: "created" in _outcomes(topics, CASE_REQUEST_OUTCOMES, "requestId", throttled))
            wait_for(lambda: len(read_topic(topics, CASE_WATCH_DLQ)) == 2)
            assert "OFFLOAD_API_KEY is not set" not in worker.service.log_tail(100_000), "a key: no warning"

    written: dict[str, set[str]] = {}
    undeclared: dict[str, set[str]] = {}
    for spec in ALL_TOPICS:
        records: list[Record] = read_topic(topics, spec)
        names = {name for record in records for name in record.headers}
        written[spec.name] = names
        if names - set(spec.headers):
            undeclared[spec.name] = names - set(spec.headers)
    assert undeclared == {}, f"headers written but not declared in offload_bridge/topics.py: {undeclared}"

    # Not vacuous: each writer above left its headers where the registry says.
    assert {
        "validation_error",
        "error",
        "original_topic",
        "original_partition",
        "original_offset",
    } <= written[CASE_EVENTS_INVALID.name]
    assert {"event_id", "event_type", "received_at", "source"} <= written[CASE_EVENTS.name]
    for spec in (ANSWERS, CASE_REQUESTS, ALL_BY_NAME["case-watch"]):
        assert "redriven_from" in written[spec.name], spec.name
    for spec in (
        ANSWER_OUTCOMES,
        CASE_REQUEST_OUTCOMES,
        ALL_BY_NAME["answers.retry"],
        ALL_BY_NAME["case-requests.retry"],
    ):
        assert "origin" in written[spec.name], spec.name
    for spec in (ANSWERS_DLQ, CASE_REQUESTS_DLQ, CASE_WATCH_DLQ):
        assert {"outcome", "error", "original_topic", "dead_lettered_at"} <= written[spec.name], spec.name
