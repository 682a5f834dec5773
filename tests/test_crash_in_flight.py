"""The guarantees at high concurrency: a SIGKILL while 64 calls to Offload are in flight, some of them slow.

Answers: one terminal outcome per answer; per case in order (two answers to the same question published
back to back reach Offload in that order: the first is taken, the second ends conflict or duplicate); no
write to the case state lost while the fold writes the same cases. Case requests: one terminal outcome
per request, at most one case per request, and the state knows every case created.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx

from offload_bridge.answers import AnswerSubmitter
from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import RunningSimulator, case_body, simulator_process
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS, CASE_REQUEST_OUTCOMES, CASE_REQUESTS, TopicSpec
from tests.streams_support import Worker, event_body, publish_webhooks
from tests.test_case_requests_worker import with_offload
from tests.test_crash_outcomes import (
    SETTLE_TIMEOUT_S,
    TERMINAL,
    terminal_outcomes,
    uncommitted_but_handled,
    wait_until_committed_to_the_end,
)

IN_FLIGHT = 64
CASES = 320
SLOW_CASES = 32  # each call about them takes SLOW_MS more
SLOW_MS = 3_000
TWICE = 48  # cases whose question gets two answers, published back to back
REQUESTS = 400
FIRST, SECOND = "The first answer.", "The second answer."
LATENCY_MS = 200
TAKEN_THEN_503 = {"rate": 0.05, "error": "503", "when": "after"}


def quiet_case(reference: str) -> dict[str, Any]:
    """A case that stays CREATED for an hour."""
    return case_body(scenario="complete", step_ms=3_600_000, clientReferenceId=reference)


def wait_all_ended(
    settings: Settings, topic: TopicSpec, subject: str, expected: set[str], worker: Worker
) -> list[dict[str, Any]]:
    """The terminal outcomes on ``topic`` once every one of ``expected`` (answerIds, requestIds) has one."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        outcomes = terminal_outcomes(settings, topic, subject)
        if {outcome[subject] for outcome in outcomes} >= expected:
            return outcomes
        assert time.monotonic() < deadline, worker.service.log_tail(30)
        time.sleep(0.5)


def kill_at_full_flight(
    worker: Worker, stats_path: str, sim: RunningSimulator, endpoint: str, ended: int
) -> dict[str, Any]:
    """SIGKILL the worker once ``ended`` records have their terminal outcome and it handles IN_FLIGHT
    records at once, half of them calls that have reached the simulator; the last stats before the kill."""
    deadline = time.monotonic() + 120
    while True:
        try:
            stats: dict[str, Any] = worker.get(stats_path, timeout=5).json()["data"]
        except httpx.HTTPError:
            stats = {}
        counts = stats.get("outcomes", stats)
        done = sum(n for kind, n in counts.items() if kind in TERMINAL)
        reached = sim.http.get("/_sim/health").json()["data"]["inFlight"].get(endpoint, 0)
        if done >= ended and stats.get("inFlight", 0) >= IN_FLIGHT and reached >= IN_FLIGHT // 2:
            worker.service.kill()
            return stats
        assert time.monotonic() < deadline, f"not there: {stats}\n{worker.service.log_tail(30)}"
        time.sleep(0.02)


def open_questions(sim: RunningSimulator, count: int, slow: int) -> list[tuple[str, str]]:
    """(caseId, inputRequestId) of ``count`` cases waiting for input, the first ``slow`` of them slow."""
    cases = [
        sim.create_case(
            scenario="input_then_complete", step_ms=50,
            metadata={"simLatencyMs": SLOW_MS} if n < slow else None,
        )
        for n in range(count)
    ]  # fmt: skip
    return [
        (case_id, sim.wait_for_truth(case_id, lambda t: t["status"] == "INPUT_NEEDED")["inputRequest"]["id"])
        for case_id in cases
    ]


def test_a_sigkill_with_64_answers_in_flight_keeps_every_guarantee(topics: Settings, tmp_path: Path) -> None:
    with simulator_process("--step-ms", "50") as sim:
        settings = with_offload(
            topics, sim.base_url, offload_retry_base_s=0.2, offload_retry_max_s=1.0,
            offload_answer_in_flight=IN_FLIGHT, offload_http_timeout_s=30.0,
        )  # fmt: skip
        questions = open_questions(sim, CASES, SLOW_CASES)
        # Every tenth case with two answers is slow too: its second answer waits behind the first.
        twice = questions[SLOW_CASES - TWICE // 4 : SLOW_CASES - TWICE // 4 + TWICE]
        # Some calls fail after Offload took the answer: retries meet 409s, retry chains run at the kill.
        sim.set_faults(latency_ms=LATENCY_MS, endpoints={"provide_input": TAKEN_THEN_503})
        # The fold writes the same cases while their answers are in flight.
        publish_webhooks(settings, [
            event_body(case_id, "case.input_needed", 1_000, "INPUT_NEEDED", inputRequest="Q?",
                       inputRequestId=question)
            for case_id, question in questions
        ])  # fmt: skip
        first: dict[str, str] = {}  # caseId -> answerId
        second: dict[str, str] = {}
        answered_twice = {case_id for case_id, _ in twice}
        with AnswerSubmitter(settings) as submitter:
            for case_id, question in questions:
                first[case_id] = submitter.publish(case_id, question, FIRST)
                if case_id in answered_twice:  # right after the first, in the same partition
                    second[case_id] = submitter.publish(case_id, question, SECOND)
        all_answers = set(first.values()) | set(second.values())

        worker = Worker(settings, tmp_path).start()
        try:
            at_kill = kill_at_full_flight(worker, "/stats/answers", sim, "provide_input", CASES // 4)
            killed_at_ms = time.time() * 1000
            handled_again = uncommitted_but_handled(settings, ANSWERS, ANSWER_OUTCOMES)
            assert handled_again > 0, "the kill came after a commit: nothing to deliver again"
            sim.set_faults(latency_ms=0, endpoints={})
            worker.start()
            outcomes = wait_all_ended(settings, ANSWER_OUTCOMES, "answerId", all_answers, worker)
            wait_until_committed_to_the_end(settings, ANSWERS)
            states = {case_id: worker.get_case(case_id).json()["data"] for case_id, _ in questions}
            stats = worker.get("/stats/answers").json()["data"]
        finally:
            worker.service.stop()
        inputs = {case_id: sim.truth(case_id)["inputs"] for case_id, _ in questions}

    counts = Counter(outcome["answerId"] for outcome in outcomes)
    twice_over = {answer_id: n for answer_id, n in counts.items() if n != 1}
    assert not twice_over, (
        f"{len(twice_over)} answers with several terminal outcomes: {list(twice_over.items())[:5]}"
    )
    ended = {outcome["answerId"]: outcome["outcome"] for outcome in outcomes}

    # Offload took one answer per question, and for the cases answered twice the first one.
    for case_id, _ in questions:
        taken = [entry["body"]["providedContext"] for entry in inputs[case_id] if entry["httpStatus"] == 202]
        assert taken == [FIRST], (case_id, inputs[case_id])
    for case_id, answer_id in second.items():
        assert ended[first[case_id]] in ("accepted", "duplicate"), (case_id, ended[first[case_id]])
        assert ended[answer_id] in ("conflict", "duplicate"), (case_id, ended[answer_id])
        # Never two calls at once for a case: the call with the second answer started only once the one
        # with the first had come back, so Offload received it at least the latency later (both before
        # the kill, while every call took LATENCY_MS).
        received = {entry["body"]["providedContext"]: entry["at"] for entry in reversed(inputs[case_id])}
        if FIRST in received and SECOND in received and received[SECOND] < killed_at_ms:
            assert received[SECOND] - received[FIRST] >= LATENCY_MS, (case_id, inputs[case_id])

    # The single writer lost nothing: the fold's question and every answer recorded accepted are there.
    lost = []
    for case_id, question in questions:
        state = states[case_id]
        if state["inputRequest"]["id"] != question:
            lost.append((case_id, "the fold's question"))
        if (
            ended[first[case_id]] == "accepted"
            and state["answers"].get(question, {}).get("answerId") != first[case_id]
        ):
            lost.append((case_id, "the accepted answer"))
    assert not lost, lost[:5]
    assert stats["redelivered"] >= 1, stats
    print(
        f"\nkilled with {at_kill.get('inFlight')} in flight, {handled_again} handled and not committed; "
        f"outcomes {Counter(ended.values())}; {stats}"
    )


def test_a_sigkill_with_64_case_requests_in_flight_creates_at_most_one_case_each(
    topics: Settings, tmp_path: Path
) -> None:
    with simulator_process("--step-ms", "50") as sim:
        settings = with_offload(
            topics, sim.base_url, offload_case_request_in_flight=IN_FLIGHT, offload_http_timeout_s=30.0
        )
        # Some cases are created and answered 503: their requests end unknown, with one case each.
        sim.set_faults(latency_ms=300, endpoints={"create_case": TAKEN_THEN_503})
        with CaseRequestSubmitter(settings) as submitter:
            request_ids = {
                submitter.publish(quiet_case(f"r-{n}"), request_id=f"r-{n}")
                for n in range(REQUESTS)
            }  # fmt: skip
        worker = Worker(settings, tmp_path).start()
        try:
            at_kill = kill_at_full_flight(worker, "/stats/case-requests", sim, "create_case", REQUESTS // 4)
            handled_again = uncommitted_but_handled(settings, CASE_REQUESTS, CASE_REQUEST_OUTCOMES)
            assert handled_again > 0, "the kill came after a commit: nothing to deliver again"
            sim.set_faults(latency_ms=0, endpoints={})
            worker.start()
            outcomes = wait_all_ended(settings, CASE_REQUEST_OUTCOMES, "requestId", request_ids, worker)
            wait_until_committed_to_the_end(settings, CASE_REQUESTS)
            created = [o for o in outcomes if o["outcome"] == "created"]
            # The bridge's case.created event of each is folded into the state.
            known = [worker.wait_case(o["caseId"], lambda state: True) for o in created]
            stats = worker.get("/stats/case-requests").json()["data"]
        finally:
            worker.service.stop()
        case_ids = sim.http.get("/_sim/cases").json()["data"]["caseIds"]
        references = [sim.truth(case_id)["clientReferenceId"] for case_id in case_ids]

    counts = Counter(outcome["requestId"] for outcome in outcomes)
    assert {request_id for request_id, n in counts.items() if n != 1} == set(), "several terminal outcomes"
    kinds = Counter(outcome["outcome"] for outcome in outcomes)
    assert set(kinds) <= {"created", "unknown"}, kinds
    assert kinds["unknown"] >= 1, f"no call was in flight at the kill: {kinds}"
    cases_of: defaultdict[str, list[str]] = defaultdict(list)
    for case_id, reference in zip(case_ids, references, strict=True):
        cases_of[reference].append(case_id)
    assert max(len(cases) for cases in cases_of.values()) == 1, "a request created two cases"
    for outcome in created:
        assert cases_of[outcome["requestId"]] == [outcome["caseId"]]
    assert [state["caseId"] for state in known] == [outcome["caseId"] for outcome in created]
    assert stats["redelivered"] >= 1, stats
    print(
        f"\nkilled with {at_kill.get('inFlight')} in flight, {handled_again} handled and not committed; "
        f"outcomes {kinds}"
    )
