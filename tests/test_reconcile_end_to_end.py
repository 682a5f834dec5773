"""Nothing lost: Offload (the simulator) drops, duplicates and reorders webhooks; the ingress, the worker and
its reconciler still end with every case equal to Offload's truth. Every part is a real process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import HttpUrl

from offload_bridge.answers import AnswerSubmitter
from offload_bridge.kafka.connection import kafka_producer
from offload_bridge.schemas.answers import Outcome
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body, simulator_process
from offload_bridge.topics import (
    ANSWER_OUTCOMES,
    CASE_EVENTS,
    CASE_REQUEST_OUTCOMES,
    CASE_REQUESTS,
    topic_name,
)
from tests.ingress_support import read_topic, running_ingress
from tests.kafka_java import assert_placed_like_kafka
from tests.streams_support import Worker, running_workers
from tests.test_case_requests_worker import with_offload

SCENARIOS = (
    "complete", "input_then_complete", "input_twice_then_complete", "fail_max_retries", "fail_bounced"
)  # fmt: skip
CASES = 200
STEP_MS = 100
RECONCILE_INTERVAL_S = 3.0
# Slack on top of two intervals for folding and HTTP on a busy 2-core machine.
SLACK_S = 10.0


def open_question(case: dict[str, Any]) -> Any:
    """The question a case waits on; a terminal or running case has none open (Offload may still show
    the resolved request, our state clears it)."""
    return case["inputRequest"] if case["status"] == "INPUT_NEEDED" else None


def view(case: dict[str, Any]) -> tuple[Any, ...]:
    return case["status"], open_question(case), case["resultStatus"], case["result"]


def publish_requests(settings: Settings) -> list[str]:
    producer = kafka_producer(settings)
    ids = []
    try:
        for number in range(CASES):
            request_id = f"req-{number:03d}"
            body = case_body(scenario=SCENARIOS[number % len(SCENARIOS)], clientReferenceId=request_id)
            value = json.dumps({**body, "requestId": request_id}).encode()
            producer.send(topic_name(CASE_REQUESTS, settings), key=request_id.encode(), value=value)
            ids.append(request_id)
        producer.flush(timeout=60)
    finally:
        producer.close()
    return ids


def created_cases(settings: Settings, timeout_s: float) -> dict[str, str]:
    """requestId -> caseId from the created outcomes, once every request has one."""
    deadline = time.monotonic() + timeout_s
    created: dict[str, str] = {}
    while time.monotonic() < deadline:
        for record in read_topic(settings, CASE_REQUEST_OUTCOMES):
            outcome = json.loads(record.value or b"{}")
            assert outcome["outcome"] == "created", outcome
            created[outcome["requestId"]] = outcome["caseId"]
        if len(created) == CASES:
            return created
        time.sleep(1)
    raise AssertionError(f"only {len(created)} of {CASES} cases created")


def our_cases(worker: Worker) -> dict[str, dict[str, Any]]:
    data = worker.get("/cases", params={"limit": 1000}, timeout=30).json()["data"]
    assert data["complete"] and not data["truncated"]
    return {case["caseId"]: case for case in data["cases"]}


def test_every_case_ends_equal_to_offloads_truth_despite_lost_webhooks(
    topics: Settings, tmp_path: Path
) -> None:
    with (
        simulator_process("--step-ms", str(STEP_MS), "--seed", "7") as sim,
        running_ingress(topics, tmp_path) as ingress,
    ):
        sim.set_faults(
            webhook_drop_rate=0.2, webhook_duplicate_rate=0.1, webhook_delay_rate=0.1, webhook_delay_ms=500
        )
        webhook_url = f"{ingress.url}/webhooks/offload"
        settings = with_offload(
            topics, sim.base_url, offload_public_webhook_url=HttpUrl(webhook_url),
            offload_reconcile_interval_s=RECONCILE_INTERVAL_S, offload_reconcile_stale_s=1.0,
            offload_reconcile_rps=200.0, offload_retry_base_s=0.2, offload_retry_max_s=2.0,
            # Time runs fast here (a step of 100 ms), and so do the hints: a case waiting for our answer
            # gets no backoff checks, only the answer's.
            offload_reconcile_after_answer_s=0.5, offload_reconcile_after_create_s=0.5,
            offload_reconcile_after_next_action_s=0.1,
        )  # fmt: skip
        worker = Worker(settings, tmp_path)
        with running_workers(worker):
            started = time.monotonic()
            publish_requests(settings)
            cases = created_cases(settings, timeout_s=120)
            case_ids = set(cases.values())
            assert len(case_ids) == CASES
            assert set(sim.http.get("/_sim/cases").json()["data"]["caseIds"]) == case_ids

            # Answer every question as it appears in our state (a dropped case.input_needed shows up
            # only once the reconciler found it), until Offload has finished every case.
            answered: set[tuple[str, str]] = set()
            answer_ids: list[str] = []
            unfinished = set(case_ids)
            truths: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + 300
            submitter = AnswerSubmitter(settings)
            while unfinished:
                assert time.monotonic() < deadline, f"{len(unfinished)} cases never finished"
                for case_id, case in our_cases(worker).items():
                    question = open_question(case)
                    if question is not None and (case_id, question["id"]) not in answered:
                        text = f"Yes, go ahead ({question['id'][:8]})."
                        answer_ids.append(submitter.publish(case_id, question["id"], text))
                        answered.add((case_id, question["id"]))
                for case_id in list(unfinished):
                    truth = sim.truth(case_id)
                    if truth["status"] in ("COMPLETED", "FAILED"):
                        truths[case_id] = truth
                        unfinished.discard(case_id)
                time.sleep(0.5)
            finished = time.monotonic()

            # Within two reconcile intervals every case equals Offload's truth.
            mismatched: dict[str, Any] = {}
            while time.monotonic() < finished + 2 * RECONCILE_INTERVAL_S + SLACK_S:
                ours = our_cases(worker)
                mismatched = {
                    case_id: (view(ours[case_id]) if case_id in ours else None, view(truth))
                    for case_id, truth in truths.items()
                    if case_id not in ours or view(ours[case_id]) != view(truth)
                }
                if not mismatched:
                    break
                time.sleep(0.5)
            converged = time.monotonic()
            assert not mismatched, f"{len(mismatched)} cases differ, e.g. {list(mismatched.items())[:3]}"

            # The faults really happened, and the reconciler is what filled the gaps.
            webhooks = [hook for truth in truths.values() for hook in truth["webhooks"]]
            assert sum(hook["dropped"] for hook in webhooks) >= 0.1 * len(webhooks)
            assert sum(hook["duplicated"] for hook in webhooks) > 0
            assert sum(hook["delayMs"] > 0 for hook in webhooks) > 0
            stats = worker.reconcile_stats()
            assert stats["published"] > 0 and stats["failed"] == 0
            assert worker.stats()["duplicate"] > 0
            assert len({case_id for case_id, _ in answered}) == sum(
                truth["scenario"].startswith("input") for truth in truths.values()
            )
            # Every answer went through the answer agent, and Offload took it.
            submitter.close()
            terminal = {
                outcome["answerId"]: outcome["outcome"]
                for outcome in (json.loads(r.value or b"{}") for r in read_topic(settings, ANSWER_OUTCOMES))
                if outcome["outcome"] != Outcome.RETRYING
            }
            assert set(terminal) == set(answer_ids)
            assert set(terminal.values()) <= {Outcome.ACCEPTED, Outcome.DUPLICATE}, terminal
            # Every producer (the ingress's librdkafka, the worker's aiokafka, kafka-python submitters)
            # placed each record where Kafka's own Java producer would: one partition per case.
            checked = assert_placed_like_kafka(
                settings,
                expect=(
                    "case-events", "case-state", "answers", "answer-outcomes", "case-requests",
                    "case-request-outcomes", "streams-case_state-changelog",
                ),
            )  # fmt: skip
            sources: dict[str, dict[str, set[int]]] = {}
            for record in read_topic(settings, CASE_EVENTS):
                source = record.headers["source"].decode()
                sources.setdefault((record.key or b"").decode(), {}).setdefault(source, set()).add(
                    record.partition
                )
            both = {case: by for case, by in sources.items() if {"webhook", "reconciler"} <= set(by)}
            assert both, "no case has both a webhook and a reconciler event"
            for case_id, by_source in both.items():
                assert len(set().union(*by_source.values())) == 1, (case_id, by_source)
            print(
                f"\nrecords placed like Kafka's Java producer: {checked}; "
                f"{len(both)} cases with webhooks and reconciler events, each in one partition"
            )
            print(
                f"\n{CASES} cases, step {STEP_MS} ms: all finished at Offload after "
                f"{finished - started:.1f}s, our state equal {converged - finished:.1f}s later; {stats}"
            )
