"""One terminal outcome per answer and per case request, even when records come again after a crash.

Records handled after the last offset commit come again after a restart. One test kills the worker while
hundreds of answers are in flight, checks that some handled records really were left uncommitted, restarts
it on the same data directory and counts the terminal outcomes per answer. Another rewinds the committed
offsets of case requests that all ended, so that every one of them comes again.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from kafka import OffsetAndMetadata, TopicPartition
from kafka.admin import MemberToRemove

from offload_bridge.answers import AnswerSubmitter
from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.kafka.connection import admin_for, kafka_consumer
from offload_bridge.kafka.reading import end_offsets, topic_partitions
from offload_bridge.schemas.headers import ORIGIN_HEADER
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import RunningSimulator, case_body, simulator_process
from offload_bridge.topics import (
    ANSWER_OUTCOMES,
    ANSWERS,
    CASE_REQUEST_OUTCOMES,
    CASE_REQUESTS,
    TopicSpec,
    topic_name,
)
from tests.ingress_support import read_topic
from tests.streams_support import Worker
from tests.test_case_requests_worker import with_offload

ANSWERS_IN_FLIGHT = 300
REQUESTS_REWOUND = 60
# Slows every Offload call so the records are handled over several seconds: the kill lands mid-stream.
LATENCY_MS = 150
SETTLE_TIMEOUT_S = 240.0
TERMINAL = {"accepted", "duplicate", "conflict", "rejected", "dead_lettered", "created", "unknown"}


def terminal_outcomes(settings: Settings, topic: TopicSpec, subject: str) -> list[dict[str, Any]]:
    outcomes = [json.loads(record.value or b"{}") for record in read_topic(settings, topic)]
    return [outcome for outcome in outcomes if outcome["outcome"] != "retrying" and outcome.get(subject)]


def origins(settings: Settings, topic: TopicSpec) -> list[tuple[int, int]]:
    """(partition, offset) of the source record of every journaled outcome."""
    found = []
    for record in read_topic(settings, topic):
        if (origin := record.headers.get(ORIGIN_HEADER)) is not None:
            _, partition, offset = origin.decode().rsplit(":", 2)
            found.append((int(partition), int(offset)))
    return found


def committed(settings: Settings, topic: TopicSpec) -> tuple[dict[int, int], dict[int, int]]:
    """The worker group's committed offset of every partition of ``topic``, and the partitions' ends."""
    name = topic_name(topic, settings)
    # A consumer of the worker's group that never joins it: it only reads the committed offsets.
    consumer = kafka_consumer(settings, group_id=settings.worker_app_id)
    try:
        partitions = topic_partitions(consumer, name)
        marks = {tp.partition: consumer.committed(tp) or 0 for tp in partitions}
        end = {tp.partition: offset for tp, offset in end_offsets(consumer, partitions).items()}
        return marks, end
    finally:
        consumer.close()


def wait_until_committed_to_the_end(settings: Settings, topic: TopicSpec) -> None:
    """Until the worker's group committed every record of ``topic``: nothing more will be redelivered."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        marks, end = committed(settings, topic)
        if marks == end:
            return
        assert time.monotonic() < deadline, f"{topic.name}: committed {marks} of {end}"
        time.sleep(0.5)


def uncommitted_but_handled(settings: Settings, source: TopicSpec, outcomes: TopicSpec) -> int:
    """Records of ``source`` whose terminal outcome is out but whose offset the group has not committed."""
    marks, _ = committed(settings, source)
    return sum(1 for partition, offset in origins(settings, outcomes) if offset >= marks.get(partition, 0))


def kill_when_done(worker: Worker, stats_path: str, count: int, timeout_s: float = 120.0) -> None:
    """SIGKILL the worker once its counters show ``count`` terminal outcomes (a cheap HTTP poll, so the
    kill lands while the rest are still in flight)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            data = worker.get(stats_path, timeout=5).json()["data"]
        except httpx.HTTPError:
            data = {}
        counts = data.get("outcomes", data)
        if sum(n for kind, n in counts.items() if kind in TERMINAL) >= count:
            break
        assert time.monotonic() < deadline, f"the worker never got going\n{worker.service.log_tail(30)}"
        time.sleep(0.05)
    worker.service.kill()


def open_questions(sim: RunningSimulator, count: int) -> dict[str, str]:
    """``count`` simulator cases waiting for input: caseId -> inputRequestId."""
    cases = [sim.create_case(scenario="input_then_complete", step_ms=50) for _ in range(count)]
    questions: dict[str, str] = {}
    for case_id in cases:
        truth = sim.wait_for_truth(case_id, lambda truth: truth["status"] == "INPUT_NEEDED")
        questions[case_id] = truth["inputRequest"]["id"]
    return questions


def test_a_sigkill_with_answers_in_flight_leaves_one_terminal_outcome_per_answer(
    topics: Settings, tmp_path: Path
) -> None:
    with simulator_process("--step-ms", "50") as sim:
        settings = with_offload(
            topics,
            sim.base_url,
            offload_retry_base_s=0.2,
            offload_retry_max_s=1.0,
        )
        questions = open_questions(sim, ANSWERS_IN_FLIGHT)
        # Some calls fail after Offload took the answer: their retries meet 409s and retry chains are
        # in flight at the kill too.
        sim.set_faults(
            latency_ms=LATENCY_MS,
            endpoints={"provide_input": {"rate": 0.1, "error": "503", "when": "after"}},
        )
        # The whole backlog waits before the worker starts, so the kill finds most of it in flight.
        with AnswerSubmitter(settings) as submitter:
            answer_ids = {
                submitter.publish(case_id, question, "Yes, go ahead.")
                for case_id, question in questions.items()
            }
        worker = Worker(settings, tmp_path).start()
        try:
            kill_when_done(worker, "/stats/answers", ANSWERS_IN_FLIGHT // 5)
            handled_again = uncommitted_but_handled(settings, ANSWERS, ANSWER_OUTCOMES)
            assert handled_again > 0, "the kill came after a commit: nothing to redeliver"
            sim.set_faults(latency_ms=0, endpoints={})
            worker.start()
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while {
                o["answerId"] for o in terminal_outcomes(settings, ANSWER_OUTCOMES, "answerId")
            } != answer_ids:
                assert time.monotonic() < deadline, worker.service.log_tail(30)
                time.sleep(0.5)
            wait_until_committed_to_the_end(settings, ANSWERS)
            counts = Counter(o["answerId"] for o in terminal_outcomes(settings, ANSWER_OUTCOMES, "answerId"))
            stats = worker.get("/stats/answers").json()["data"]
        finally:
            worker.service.stop()
    twice = {answer_id: n for answer_id, n in counts.items() if n != 1}
    assert not twice, (
        f"{len(twice)} answers with more than one terminal outcome, e.g. {list(twice.items())[:5]}"
    )
    assert stats["redelivered"] >= 1, stats
    print(f"\n{handled_again} answers handled before the kill came again; {stats}")


def rewind(settings: Settings, topic: TopicSpec, instance_id: str) -> None:
    """Commit offset 0 for every partition of ``topic`` in the (stopped) worker's group: every record is
    delivered again, as after a crash right after the outcomes went out and before the commit."""
    name = topic_name(topic, settings)
    admin = admin_for(settings)
    try:
        # A stopped static member stays in the group until its session expires; take it out now.
        admin.remove_group_members(settings.worker_app_id, [MemberToRemove(group_instance_id=instance_id)])
        offsets = {
            TopicPartition(name, p): OffsetAndMetadata(0, "", -1)
            for p in range(settings.offload_topic_partitions)
        }
        admin.alter_group_offsets(settings.worker_app_id, offsets)
    finally:
        admin.close()
    marks, _ = committed(settings, topic)
    assert set(marks.values()) == {0}, marks


def test_case_requests_delivered_again_get_no_second_outcome_and_no_second_case(
    topics: Settings, tmp_path: Path
) -> None:
    with simulator_process("--step-ms", "50") as sim:
        settings = with_offload(topics, sim.base_url, offload_worker_instance_id="rewound")
        with CaseRequestSubmitter(settings) as submitter:
            request_ids = {
                submitter.publish(case_body(clientReferenceId=f"again-{n}"), request_id=f"again-{n}")
                for n in range(REQUESTS_REWOUND)
            }
        worker = Worker(settings, tmp_path).start()
        try:
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while {
                o["requestId"] for o in terminal_outcomes(settings, CASE_REQUEST_OUTCOMES, "requestId")
            } < request_ids:
                assert time.monotonic() < deadline, worker.service.log_tail(30)
                time.sleep(0.5)
            wait_until_committed_to_the_end(settings, CASE_REQUESTS)
            worker.service.stop()
            rewind(settings, CASE_REQUESTS, "rewound")
            worker.start()
            wait_until_committed_to_the_end(settings, CASE_REQUESTS)
            outcomes = terminal_outcomes(settings, CASE_REQUEST_OUTCOMES, "requestId")
            stats = worker.get("/stats/case-requests").json()["data"]
        finally:
            worker.service.stop()
        cases = sim.http.get("/_sim/cases").json()["data"]["caseIds"]
    counts = Counter(outcome["requestId"] for outcome in outcomes)
    assert set(counts) == request_ids
    twice = {request_id: n for request_id, n in counts.items() if n != 1}
    assert not twice, f"{len(twice)} requests with several terminal outcomes, e.g. {list(twice.items())[:5]}"
    assert {outcome["outcome"] for outcome in outcomes} == {"created"}
    assert len(cases) == REQUESTS_REWOUND, "a request delivered again created a second case"
    assert stats["redelivered"] == REQUESTS_REWOUND, stats
    assert stats["created"] == 0, stats
