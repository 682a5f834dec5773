"""Fault injection at its configured rates, with a fixed seed.

Rate bounds are six binomial standard deviations wide: a pass does not depend on the seed or on the order in
which concurrent cases drew their dice, yet a knob that is off (rate 0) or always on (rate 1) fails them.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from offload_bridge.simulator.testing import (
    RunningSimulator,
    WebhookReceiver,
    deliveries_done,
    simulator_process,
)


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[RunningSimulator]:
    with simulator_process("--step-ms", "20", "--seed", "1234") as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: RunningSimulator) -> RunningSimulator:
    shared_sim.reset()
    return shared_sim


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def within_six_sigma(count: int, trials: int, rate: float) -> bool:
    mean = trials * rate
    spread = 6 * math.sqrt(trials * rate * (1 - rate))
    return mean - spread <= count <= mean + spread


def all_sent(truth: dict[str, Any]) -> bool:
    return truth["status"] == "FAILED" and deliveries_done(truth)


def bounced_cases(sim: RunningSimulator, url: str, count: int) -> list[dict[str, Any]]:
    """Create ``count`` fail_bounced cases (one webhook each); their truths once every delivery is done.

    From then on the receiver holds every webhook it will ever get: what the tests compare is final.
    Every delivery must have succeeded: a failure here is the receiver's or the sender's, not a fault.
    """
    # Created from several threads, so webhooks arrive in bursts, as they do on a busy machine.
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: sim.create_case(url, scenario="fail_bounced"), range(count)))
    truths = [sim.wait_for_truth(case_id, all_sent, timeout_s=60) for case_id in ids]
    failed = [d for t in truths for w in t["webhooks"] for d in w["deliveries"] if not d["ok"]]
    assert failed == [], f"{len(failed)} deliveries failed, e.g. {failed[:3]}"
    return truths


def test_webhook_drop_rate(sim: RunningSimulator, receiver: WebhookReceiver) -> None:
    sim.set_faults(webhook_drop_rate=0.3)
    truths = bounced_cases(sim, receiver.url, 300)
    dropped = {t["caseId"] for t in truths if t["webhooks"][0]["dropped"]}
    sent = {t["caseId"] for t in truths} - dropped
    assert within_six_sigma(len(dropped), 300, 0.3), len(dropped)
    received = Counter(event["data"]["caseId"] for event in receiver.events())
    assert set(received) == sent
    assert set(received.values()) == {1}


def test_webhook_duplicate_rate(sim: RunningSimulator, receiver: WebhookReceiver) -> None:
    sim.set_faults(webhook_duplicate_rate=0.2)
    truths = bounced_cases(sim, receiver.url, 300)
    duplicated = {t["caseId"] for t in truths if t["webhooks"][0]["duplicated"]}
    assert within_six_sigma(len(duplicated), 300, 0.2), len(duplicated)
    bodies: dict[str, list[bytes]] = {}
    for request in receiver.requests:
        bodies.setdefault(request.json()["data"]["caseId"], []).append(request.body)
    assert {case_id for case_id, copies in bodies.items() if len(copies) == 2} == duplicated
    assert all(len(copies) in (1, 2) and len(set(copies)) == 1 for copies in bodies.values())
    assert len(bodies) == 300


def test_webhook_delay_holds_events_back_and_reorders_them(
    sim: RunningSimulator, receiver: WebhookReceiver
) -> None:
    sim.set_faults(webhook_delay_rate=0.5, webhook_delay_ms=800)
    truths = bounced_cases(sim, receiver.url, 60)
    delayed = {t["caseId"] for t in truths if t["webhooks"][0]["delayMs"] == 800}
    assert within_six_sigma(len(delayed), 60, 0.5), len(delayed)
    assert len(receiver.requests) == 60
    arrivals = [(request.json(), request.received_at_ms) for request in receiver.requests]
    for event, received_at in arrivals:
        if event["data"]["caseId"] in delayed:
            assert received_at - event["timestamp"] >= 800
    timestamps = [event["timestamp"] for event, _ in arrivals]
    assert timestamps != sorted(timestamps), "no webhook overtook a held-back one"


def test_endpoint_error_rate(sim: RunningSimulator) -> None:
    case_id = sim.create_case(step_ms=60_000)
    sim.set_faults(endpoints={"get_case": {"rate": 0.25, "error": "503"}})
    statuses = Counter(
        sim.http.get(f"/cases/{case_id}", headers=sim.headers()).status_code for _ in range(400)
    )
    assert set(statuses) == {200, 503}
    assert within_six_sigma(statuses[503], 400, 0.25), statuses
    # Other endpoints keep working.
    assert sim.http.post("/cases", json={}, headers=sim.headers()).status_code == 400


def _error_pattern(sim: RunningSimulator, case_id: str, seed: int) -> list[int]:
    sim.set_faults(seed=seed, endpoints={"get_case": {"rate": 0.5, "error": "500"}})
    return [sim.http.get(f"/cases/{case_id}", headers=sim.headers()).status_code for _ in range(60)]


def test_the_same_seed_reproduces_the_same_faults(sim: RunningSimulator) -> None:
    case_id = sim.create_case(step_ms=60_000)
    first = _error_pattern(sim, case_id, seed=42)
    again = _error_pattern(sim, case_id, seed=42)
    other = _error_pattern(sim, case_id, seed=43)
    assert first == again
    assert first != other
    assert set(first) == {200, 500}


@pytest.mark.parametrize(
    ("kind", "status", "envelope", "retry_after"),
    [
        ("500", 500, "INTERNAL_ERROR", None),
        ("503", 503, "SERVICE_UNAVAILABLE", None),
        ("429", 429, None, None),
        ("429-retry-after", 429, None, "7"),
        ("502-bare", 502, None, None),
        ("500-bare", 500, None, None),
    ],
)
def test_each_error_kind_answers_as_documented(
    sim: RunningSimulator, kind: str, status: int, envelope: str | None, retry_after: str | None
) -> None:
    sim.set_faults(endpoints={"create_case": {"rate": 1.0, "error": kind, "retry_after_s": 7}})
    response = sim.http.post("/cases", json={}, headers=sim.headers())
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    if envelope is not None:
        assert response.json() == {
            "ok": False,
            "error": {"code": envelope, "message": response.json()["error"]["message"]},
        }
    else:
        # Like an API gateway: no envelope at all.
        try:
            body = response.json()
        except ValueError:
            body = response.text
        assert not (isinstance(body, dict) and "ok" in body)
    # A fault before processing creates nothing.
    assert sim.http.get("/_sim/cases").json()["data"]["caseIds"] == []


def test_a_fault_after_processing_loses_only_the_response(
    sim: RunningSimulator, receiver: WebhookReceiver
) -> None:
    case_id = sim.create_case(receiver.url, scenario="input_then_complete", step_ms=1500)
    request_id = receiver.wait_for_event(case_id, "case.input_needed", timeout_s=60)["data"]["inputRequestId"]
    sim.set_faults(endpoints={"provide_input": {"rate": 1.0, "error": "502-bare", "when": "after"}})
    assert sim.answer(case_id, request_id, "Yes.").status_code == 502
    truth = sim.truth(case_id)
    assert truth["inputRequest"]["status"] == "RESOLVED"
    assert truth["inputs"][-1]["httpStatus"] == 202
    assert truth["inputs"][-1]["fault"] == "502-bare after processing"
    sim.set_faults(endpoints={})
    resent = sim.answer(case_id, request_id, "Yes.")
    assert resent.status_code == 409 and resent.json()["error"]["code"] == "INPUT_REQUEST_NOT_PENDING"
    receiver.wait_for_event(case_id, "case.completed", timeout_s=60)


def test_a_fault_before_processing_leaves_the_question_pending(
    sim: RunningSimulator, receiver: WebhookReceiver
) -> None:
    case_id = sim.create_case(receiver.url, scenario="input_then_complete")
    request_id = receiver.wait_for_event(case_id, "case.input_needed")["data"]["inputRequestId"]
    sim.set_faults(endpoints={"provide_input": {"rate": 1.0, "error": "503"}})
    assert sim.answer(case_id, request_id, "Yes.").status_code == 503
    truth = sim.truth(case_id)
    assert truth["inputRequest"]["status"] == "PENDING"
    assert truth["inputs"][-1]["fault"] == "503 instead of processing"
    sim.set_faults(endpoints={})
    assert sim.answer(case_id, request_id, "Yes.").status_code == 202


def test_added_latency(sim: RunningSimulator) -> None:
    case_id = sim.create_case(step_ms=60_000)
    sim.set_faults(latency_ms=400)
    started = time.monotonic()
    assert sim.http.get(f"/cases/{case_id}", headers=sim.headers()).status_code == 200
    assert time.monotonic() - started >= 0.4


def test_health_shows_the_calls_under_way(sim: RunningSimulator) -> None:
    case_id = sim.create_case(step_ms=60_000)
    sim.set_faults(latency_ms=2_000)
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(sim.get_case, case_id) for _ in range(2)]
        sim.wait_in_flight("get_case", count=2, timeout_s=10)
        for call in calls:
            call.result()
    assert sim.http.get("/_sim/health").json()["data"]["inFlight"] == {}


def test_faults_can_be_read_and_changed_at_run_time(sim: RunningSimulator) -> None:
    before = sim.http.get("/_sim/faults").json()["data"]
    assert before["seed"] == 1234
    assert before["faults"]["webhook_drop_rate"] == 0.0
    changed = sim.set_faults(webhook_drop_rate=0.5, seed=7)
    assert changed["seed"] == 7 and changed["faults"]["webhook_drop_rate"] == 0.5
    assert sim.http.get("/_sim/faults").json()["data"] == changed
    for bad in (
        {"webhook_drop_rate": 2},
        {"endpoints": {"nope": {"rate": 1}}},
        {"surprise": 1},
        {"seed": "x"},
    ):
        response = sim.http.put("/_sim/faults", json=bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_REQUEST"
    sim.reset()
    assert sim.http.get("/_sim/faults").json()["data"] == before


def test_faults_set_at_start_by_flags_and_environment(receiver: WebhookReceiver) -> None:
    env = {"SIMULATOR_FAULT_LATENCY_MS": "5", "SIMULATOR_FAULT_ERRORS": "get_attachment=0.5:429-retry-after"}
    args = ("--seed", "99", "--fault-webhook-drop-rate", "1", "--fault-error", "get_case=1:502-bare")
    with simulator_process(*args, env=env) as sim:
        faults = sim.http.get("/_sim/faults").json()["data"]
        assert faults["seed"] == 99
        assert faults["faults"]["latency_ms"] == 5
        assert faults["faults"]["webhook_drop_rate"] == 1.0
        # The flag replaces the environment's error list.
        assert set(faults["faults"]["endpoints"]) == {"get_case"}
        assert faults["faults"]["endpoints"]["get_case"]["error"] == "502-bare"
        case_id = sim.create_case(receiver.url, scenario="fail_bounced")
        assert httpx.get(f"{sim.base_url}/cases/{case_id}", headers=sim.headers()).status_code == 502
        truth = sim.wait_for_truth(case_id, lambda t: t["status"] == "FAILED")
        assert truth["webhooks"][0]["dropped"] is True
        assert truth["webhooks"][0]["deliveries"] == []
        # A webhook sent after the dropped one bounds the wait: once it is in, a delivery of the dropped
        # webhook (decided and due earlier) would be too.
        sim.set_faults(webhook_drop_rate=0.0)
        later = sim.create_case(receiver.url, scenario="fail_bounced")
        receiver.wait_for_event(later, "case.failed")
        assert [event["data"]["caseId"] for event in receiver.events()] == [later]
