"""Each scenario end to end, observed through the webhooks a real HTTP receiver gets from the simulator."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import standardwebhooks

from offload_bridge.simulator.testing import (
    RunningSimulator,
    WebhookReceiver,
    case_body,
    deliveries_done,
    signature_ok,
    simulator_process,
)

# The two example payloads of Offload's docs (quickstart and input-needed guide), verbatim.
SEED_COMPLETED: dict[str, Any] = {
    "event_id": "evt_case_123_case_completed_1774131900000",
    "event_type": "case.completed",
    "timestamp": 1774131900000,
    "data": {
        "caseId": "case_123",
        "clientReferenceId": "vendor_2048",
        "status": "COMPLETED",
        "channel": "EMAIL",
        "attemptCount": 2,
        "resultStatus": "goal_achieved",
        "result": {
            "signedW9Received": True,
            "taxId": "12-3456789",
            "documentUrl": "https://files.example.com/w9.pdf",
        },
    },
}
SEED_INPUT_NEEDED: dict[str, Any] = {
    "event_id": "evt_4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f_case_input_needed_1774131900300",
    "event_type": "case.input_needed",
    "timestamp": 1774131900300,
    "data": {
        "caseId": "4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f",
        "clientReferenceId": "vendor_2048",
        "status": "INPUT_NEEDED",
        "channel": "EMAIL",
        "attemptCount": 1,
        "attachments": [],
        "inputRequest": "The vendor asked whether a signed PDF is acceptable. How should I respond?",
        "inputRequestId": "c8c6a7ca-a913-4d13-8cd8-5887efb0531c",
        "inputRequestStatus": "PENDING",
        "inputRequestedAt": 1774131900300,
    },
}
# Unpadded base64, as secrets are often copied: the official standardwebhooks library takes it.
SECRET = "whsec_QDqsZTd26WtI3jz8frN4Ag"


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[RunningSimulator]:
    with simulator_process("--step-ms", "60", "--seed", "2") as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: RunningSimulator) -> RunningSimulator:
    shared_sim.reset()
    return shared_sim


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def expected_event_id(event: dict[str, Any]) -> str:
    kind = event["event_type"].replace(".", "_")
    return f"evt_{event['data']['caseId']}_{kind}_{event['timestamp']}"


def settle(sim: RunningSimulator, receiver: WebhookReceiver, case_id: str) -> list[dict[str, Any]]:
    """The case's events once it ended and every delivery the simulator made has its outcome: nothing more
    will come, so a retry or a stray event is already among them."""
    truth = sim.wait_for_truth(
        case_id, lambda t: t["status"] in ("COMPLETED", "FAILED") and deliveries_done(t), timeout_s=60
    )
    failed = [d for webhook in truth["webhooks"] for d in webhook["deliveries"] if not d["ok"]]
    assert failed == [], failed
    return receiver.events(case_id)


def test_complete_sends_one_case_completed(sim: RunningSimulator, receiver: WebhookReceiver) -> None:
    case_id = sim.create_case(receiver.url, metadata={"team": "ap"})
    events = settle(sim, receiver, case_id)
    assert [e["event_type"] for e in events] == ["case.completed"]
    event = events[0]
    case = sim.get_case(case_id)
    assert event["event_id"] == expected_event_id(event)
    assert event["timestamp"] == case["updatedAt"]
    data = event["data"]
    assert data["status"] == "COMPLETED" and data["resultStatus"] == "goal_achieved"
    assert data["attemptCount"] == 1
    assert data["result"]["signedW9Received"] is True  # the resultSchema's required field
    assert data["result"] == case["result"]
    assert data["metadata"] == {"team": "ap"}
    request = receiver.requests[0]
    assert request.headers["content-type"] == "application/json"
    assert "webhook-signature" not in request.headers  # Offload's webhooks are unsigned by default
    assert request.path == "/webhooks"


def test_input_then_complete(sim: RunningSimulator, receiver: WebhookReceiver) -> None:
    case_id = sim.create_case(receiver.url, scenario="input_then_complete")
    asked = receiver.wait_for_event(case_id, "case.input_needed")
    data = asked["data"]
    assert data["status"] == "INPUT_NEEDED" and data["inputRequestStatus"] == "PENDING"
    assert data["inputRequestedAt"] == asked["timestamp"]
    assert data["metadata"] == {"simScenario": "input_then_complete"}
    assert sim.get_case(case_id)["inputRequest"]["id"] == data["inputRequestId"]

    assert sim.answer(case_id, data["inputRequestId"], "Yes, next Monday is acceptable.").status_code == 202
    events = settle(sim, receiver, case_id)
    assert [e["event_type"] for e in events] == ["case.input_needed", "case.completed"]
    assert events[1]["timestamp"] > asked["timestamp"]
    assert all(e["event_id"] == expected_event_id(e) for e in events)
    case = sim.get_case(case_id)
    assert case["goal"]["knowledge"]["additionalHumanContext"] == ["Yes, next Monday is acceptable."]
    statuses = [step["status"] for step in sim.truth(case_id)["history"]]
    assert statuses == ["CREATED", "RUNNING", "INPUT_NEEDED", "RUNNING", "COMPLETED"]


def test_input_twice_then_complete(sim: RunningSimulator, receiver: WebhookReceiver) -> None:
    case_id = sim.create_case(receiver.url, scenario="input_twice_then_complete")
    first = receiver.wait_for_event(case_id, "case.input_needed")["data"]
    assert sim.answer(case_id, first["inputRequestId"], "First answer.").status_code == 202
    second = receiver.wait_for_event(case_id, "case.input_needed", nth=2)["data"]
    assert second["inputRequestId"] != first["inputRequestId"]
    assert second["inputRequest"] != first["inputRequest"]
    # The first question's id is stale now.
    stale = sim.answer(case_id, first["inputRequestId"], "First answer.")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "INPUT_REQUEST_MISMATCH"
    assert sim.answer(case_id, second["inputRequestId"], "Second answer.").status_code == 202

    events = settle(sim, receiver, case_id)
    assert [e["event_type"] for e in events] == ["case.input_needed", "case.input_needed", "case.completed"]
    assert len({e["event_id"] for e in events}) == 3
    context = sim.get_case(case_id)["goal"]["knowledge"]["additionalHumanContext"]
    assert context == ["First answer.", "Second answer."]


def test_fail_max_retries_follows_up_until_max_attempts(
    sim: RunningSimulator, receiver: WebhookReceiver
) -> None:
    case_id = sim.create_case(receiver.url, scenario="fail_max_retries", maxAttempts=4)
    events = settle(sim, receiver, case_id)
    assert [e["event_type"] for e in events] == ["case.failed"]
    data = events[0]["data"]
    assert data["status"] == "FAILED"
    assert data["resultStatus"] == "max_retries"
    assert data["attemptCount"] == 4
    assert "failureReason" in data and data["failureReason"] is None
    attempts = [step["attemptCount"] for step in sim.truth(case_id)["history"]]
    assert attempts == [0, 1, 2, 3, 4, 4]


def test_fail_bounced(sim: RunningSimulator, receiver: WebhookReceiver) -> None:
    case_id = sim.create_case(receiver.url, scenario="fail_bounced")
    events = settle(sim, receiver, case_id)
    assert [e["event_type"] for e in events] == ["case.failed"]
    data = events[0]["data"]
    assert data["resultStatus"] == "BOUNCED"
    assert data["attemptCount"] == 1
    assert "ap@northstar.example" in data["failureReason"]
    assert sim.get_case(case_id)["resultStatus"] == "BOUNCED"


def _shape(value: Any) -> Any:
    """The field names and JSON types of a payload, recursively."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    return type(value).__name__


def test_completed_webhook_has_the_seed_example_shape(
    sim: RunningSimulator, receiver: WebhookReceiver
) -> None:
    body = case_body(receiver.url)  # the quickstart's own request, no metadata
    case_id = sim.http.post("/cases", json=body, headers=sim.headers()).json()["data"]["caseId"]
    (event,) = settle(sim, receiver, case_id)
    sent = _shape(event)
    seed = _shape(SEED_COMPLETED)
    # Offload's reference says data always carries attachments, though this example omits them.
    assert sent["data"].pop("attachments") == "list"
    assert sent == seed


def test_input_needed_webhook_has_the_seed_example_shape(
    sim: RunningSimulator, receiver: WebhookReceiver
) -> None:
    case_id = sim.create_case(receiver.url, scenario="input_then_complete")
    event = receiver.wait_for_event(case_id, "case.input_needed")
    sent = _shape(event)
    # Metadata is echoed when given; the scenario knob lives there.
    assert sent["data"].pop("metadata") == {"simScenario": "str"}
    assert sent == _shape(SEED_INPUT_NEEDED)
    assert str(uuid.UUID(event["data"]["inputRequestId"])) == event["data"]["inputRequestId"]


def test_a_failed_delivery_is_never_retried(sim: RunningSimulator) -> None:
    with WebhookReceiver(status=500) as failing:
        case_id = sim.create_case(failing.url, scenario="fail_bounced")
        truth = sim.wait_for_truth(case_id, lambda t: t["status"] == "FAILED")
        failing.wait_until(lambda requests: len(requests) >= 1)
        time.sleep(1.0)  # many steps: a retry would have come by now
        assert len(failing.requests) == 1
        truth = sim.truth(case_id)
        (webhook,) = truth["webhooks"]
        assert webhook["deliveries"] == [
            {"at": webhook["deliveries"][0]["at"], "httpStatus": 500, "ok": False}
        ]


def test_webhooks_are_signed_when_a_secret_is_set(receiver: WebhookReceiver) -> None:
    with simulator_process("--step-ms", "50", "--webhook-secret", SECRET) as sim:
        case_id = sim.create_case(receiver.url, scenario="fail_bounced")
        event = receiver.wait_for_event(case_id, "case.failed")
        (request,) = receiver.requests
        assert request.headers["webhook-id"] == event["event_id"]
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        assert request.headers["webhook-signature"].startswith("v1,")
        assert signature_ok(SECRET, request.headers, request.body)
        tampered = request.body.replace(b"BOUNCED", b"bounced")
        assert not signature_ok(SECRET, request.headers, tampered)
        # The official Standard Webhooks library verifies it with the same secret.
        standardwebhooks.Webhook(SECRET).verify(request.body, request.headers)
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(SECRET).verify(tampered, request.headers)


def test_an_invalid_webhook_secret_stops_the_simulator_with_a_clear_error() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "simulator", "--webhook-secret", "not-a-secret"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "SIMULATOR_WEBHOOK_SECRET" in result.stderr and "whsec_" in result.stderr
    assert "Traceback" not in result.stderr
