"""The simulator's Offload API over real HTTP: every documented status and error code."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from offload_bridge.simulator.testing import RunningSimulator, case_body, simulator_process

SENTINEL = 253402300799999
DOCUMENTED_CASE_FIELDS = {
    "caseId", "clientReferenceId", "status", "createdAt", "updatedAt", "nextActionAt", "attemptCount",
    "maxAttempts", "channel", "counterparty", "attachments", "resultStatus", "result", "goal", "resultSchema",
    "senderPersona", "constraints", "inputRequest", "conversationThread",
}  # fmt: skip
SLOW = 60_000  # a per-case step long enough that the case stays where the test looks at it


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[RunningSimulator]:
    env = {"SIMULATOR_API_KEYS": "dev-key,other-key", "SIMULATOR_INACTIVE_API_KEYS": "old-key"}
    with simulator_process("--step-ms", "50", "--seed", "1", env=env) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: RunningSimulator) -> RunningSimulator:
    shared_sim.reset()
    return shared_sim


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["ok"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def post_case(sim: RunningSimulator, body: Any, key: str = "dev-key") -> httpx.Response:
    return sim.http.post("/cases", json=body, headers={"x-api-key": key})


def test_create_case_answers_201_with_a_uuid_and_the_case_reads_created(sim: RunningSimulator) -> None:
    response = post_case(sim, case_body(step_ms=SLOW))
    assert response.status_code == 201
    assert response.json()["ok"] is True
    case_id = response.json()["data"]["caseId"]
    assert str(uuid.UUID(case_id)) == case_id

    case = sim.get_case(case_id)
    assert set(case) == DOCUMENTED_CASE_FIELDS
    assert case["status"] == "CREATED"
    assert case["attemptCount"] == 0
    assert case["createdAt"] == case["updatedAt"]
    assert case["createdAt"] < case["nextActionAt"] < SENTINEL  # the first send is scheduled
    assert case["maxAttempts"] == 3
    assert case["channel"] == "EMAIL"
    assert case["clientReferenceId"] == "vendor_2048"
    assert case["counterparty"]["timezone"] == "America/Los_Angeles"
    assert case["senderPersona"]["tone"] == "friendly, concise"
    assert case["constraints"] == ["Email only", "Do not mention legal action"]
    assert case["resultSchema"]["required"] == ["signedW9Received"]
    assert case["goal"]["knowledge"]["vendorName"] == "Northstar Supplies"
    assert case["attachments"] == []
    assert case["inputRequest"] is None
    assert case["resultStatus"] is None and case["result"] is None
    assert case["conversationThread"] is None


def test_optional_fields_take_their_documented_defaults(sim: RunningSimulator) -> None:
    body = case_body(step_ms=SLOW)
    for optional in ("maxAttempts", "followUpDelayHours", "constraints", "resultSchema", "clientReferenceId"):
        del body[optional]
    body["goal"]["knowledge"] = "a plain string is allowed"
    response = post_case(sim, body)
    assert response.status_code == 201, response.text
    case_id = response.json()["data"]["caseId"]
    case = sim.get_case(case_id)
    assert case["maxAttempts"] == 3
    assert case["constraints"] == []
    assert case["clientReferenceId"] is None
    assert case["goal"]["knowledge"] == "a plain string is allowed"
    assert sim.truth(case_id)["followUpDelayHours"] == 72


def _without(path: str) -> dict[str, Any]:
    body = case_body()
    *parents, leaf = path.split(".")
    target = body
    for part in parents:
        target = target[part]
    del target[leaf]
    return body


def _with(**changes: Any) -> dict[str, Any]:
    body = case_body()
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = body
        for part in parents:
            target = target[part]
        target[leaf] = value
    return body


INVALID_BODIES = {
    "channel missing": _without("channel"),
    "channel not EMAIL or SMS": _with(channel="FAX"),
    "goal missing": _without("goal"),
    "objective missing": _without("goal.objective"),
    "objective blank": _with(goal__objective="  "),
    "knowledge missing": _without("goal.knowledge"),
    "knowledge a number": _with(goal__knowledge=42),
    "counterparty missing": _without("counterparty"),
    "address missing": _without("counterparty.address"),
    "counterparty name missing": _without("counterparty.name"),
    "customData value not a string": _with(counterparty__customData={"tier": 1}),
    "senderPersona missing": _without("senderPersona"),
    "senderPersona name missing": _without("senderPersona.name"),
    "maxAttempts a string": _with(maxAttempts="3"),
    "maxAttempts zero": _with(maxAttempts=0),
    "followUpDelayHours zero": _with(followUpDelayHours=0),
    "followUpDelayHours negative": _with(followUpDelayHours=-1),
    "constraints not a list": _with(constraints="Email only"),
    "resultSchema not an object": _with(resultSchema=["signedW9Received"]),
    "clientWebhookUrl not a URL": _with(clientWebhookUrl="not a url"),
    "unknown simScenario": _with(metadata={"simScenario": "explode"}),
    "body not an object": [1, 2],
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_create_case_rejects_an_invalid_body_with_400(sim: RunningSimulator, body: Any) -> None:
    assert_error(post_case(sim, body), 400, "INVALID_REQUEST")
    assert sim.http.get("/_sim/cases").json()["data"]["caseIds"] == []


def test_create_case_rejects_a_body_that_is_not_json(sim: RunningSimulator) -> None:
    response = sim.http.post("/cases", content=b"{nope", headers={"x-api-key": "dev-key"})
    assert_error(response, 400, "INVALID_REQUEST")


def test_sms_channel_is_accepted(sim: RunningSimulator) -> None:
    assert post_case(sim, _with(channel="SMS")).status_code == 201


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "no-such-key"}, {"x-api-key": ""}])
def test_missing_or_unknown_api_key_is_401_on_every_endpoint(
    sim: RunningSimulator, headers: dict[str, str]
) -> None:
    case_id = sim.create_case(step_ms=SLOW)
    answer = {"inputRequestId": "x", "providedContext": "y"}
    assert_error(sim.http.post("/cases", json=case_body(), headers=headers), 401, "UNAUTHORIZED")
    assert_error(sim.http.get(f"/cases/{case_id}", headers=headers), 401, "UNAUTHORIZED")
    assert_error(sim.http.post(f"/cases/{case_id}/input", json=answer, headers=headers), 401, "UNAUTHORIZED")
    assert_error(sim.http.get(f"/cases/{case_id}/attachments/a", headers=headers), 401, "UNAUTHORIZED")


def test_inactive_api_key_is_403_forbidden(sim: RunningSimulator) -> None:
    assert_error(post_case(sim, case_body(), key="old-key"), 403, "FORBIDDEN")


def test_a_case_of_another_key_is_403_forbidden(sim: RunningSimulator) -> None:
    case_id = sim.create_case(step_ms=SLOW)
    other = {"x-api-key": "other-key"}
    answer = {"inputRequestId": "x", "providedContext": "y"}
    assert_error(sim.http.get(f"/cases/{case_id}", headers=other), 403, "FORBIDDEN")
    assert_error(sim.http.post(f"/cases/{case_id}/input", json=answer, headers=other), 403, "FORBIDDEN")
    assert_error(sim.http.get(f"/cases/{case_id}/attachments/a", headers=other), 403, "FORBIDDEN")
    assert sim.http.get(f"/cases/{case_id}", headers={"x-api-key": "dev-key"}).status_code == 200


def test_an_unknown_case_is_404_case_not_found(sim: RunningSimulator) -> None:
    missing = str(uuid.uuid4())
    answer = {"inputRequestId": "x", "providedContext": "y"}
    headers = sim.headers()
    assert_error(sim.http.get(f"/cases/{missing}", headers=headers), 404, "CASE_NOT_FOUND")
    assert_error(
        sim.http.post(f"/cases/{missing}/input", json=answer, headers=headers), 404, "CASE_NOT_FOUND"
    )
    assert_error(sim.http.get(f"/cases/{missing}/attachments/a", headers=headers), 404, "CASE_NOT_FOUND")


def test_get_case_transcript_on_request_and_400_for_a_bad_flag(sim: RunningSimulator) -> None:
    case_id = sim.create_case(scenario="fail_bounced")
    sim.wait_for_truth(case_id, lambda t: t["status"] == "FAILED")
    headers = sim.headers()
    with_transcript = sim.http.get(f"/cases/{case_id}", params={"includeTranscript": "true"}, headers=headers)
    assert "ap@northstar.example" in with_transcript.json()["data"]["conversationThread"]
    assert sim.get_case(case_id)["conversationThread"] is None
    bad = sim.http.get(f"/cases/{case_id}", params={"includeTranscript": "maybe"}, headers=headers)
    assert_error(bad, 400, "INVALID_REQUEST")


def test_usage_limit_is_429_usage_limit_reached_per_key(sim: RunningSimulator) -> None:
    sim.set_faults(usage_limit=2)
    assert post_case(sim, case_body()).status_code == 201
    assert post_case(sim, case_body()).status_code == 201
    assert_error(post_case(sim, case_body()), 429, "USAGE_LIMIT_REACHED")
    assert post_case(sim, case_body(), key="other-key").status_code == 201


def test_an_internal_error_is_500_internal_error(sim: RunningSimulator) -> None:
    case_id = sim.create_case(step_ms=SLOW)
    sim.set_faults(endpoints={"get_case": {"rate": 1.0, "error": "500"}})
    assert_error(sim.http.get(f"/cases/{case_id}", headers=sim.headers()), 500, "INTERNAL_ERROR")


def test_answer_to_a_case_not_waiting_for_input_is_409(sim: RunningSimulator) -> None:
    created = sim.create_case(step_ms=SLOW)
    finished = sim.create_case(scenario="complete")
    sim.wait_for_truth(finished, lambda t: t["status"] == "COMPLETED")
    for case_id in (created, finished):
        response = sim.answer(case_id, str(uuid.uuid4()), "Yes.")
        assert_error(response, 409, "CASE_NOT_WAITING_FOR_INPUT")


def test_input_request_lifecycle_and_every_answer_error(sim: RunningSimulator) -> None:
    # A slow step keeps the case in each state long enough to look at it.
    case_id = sim.create_case(scenario="input_then_complete", step_ms=1500)
    truth = sim.wait_for_truth(case_id, lambda t: t["status"] == "INPUT_NEEDED", timeout_s=60)
    case = sim.get_case(case_id)
    request = case["inputRequest"]
    assert set(request) == {"id", "question", "status", "requestedAt"}
    assert request["status"] == "PENDING"
    assert request["requestedAt"] == case["updatedAt"]
    assert case["nextActionAt"] == SENTINEL
    assert truth["inputRequest"]["id"] == request["id"]

    assert_error(sim.answer(case_id, str(uuid.uuid4()), "Yes."), 409, "INPUT_REQUEST_MISMATCH")
    assert_error(sim.answer(case_id, request["id"], "   "), 400, "INVALID_REQUEST")
    missing = sim.http.post(
        f"/cases/{case_id}/input", json={"providedContext": "Yes."}, headers=sim.headers()
    )
    assert_error(missing, 400, "INVALID_REQUEST")

    accepted = sim.answer(case_id, f"  {request['id']} ", "  Yes. Signed PDFs are acceptable.  ")
    assert accepted.status_code == 202
    assert accepted.json() == {
        "ok": True,
        "data": {"caseId": case_id, "inputRequestId": request["id"], "accepted": True},
    }
    # RESOLVED at once, while the case still reads INPUT_NEEDED for one step.
    after = sim.get_case(case_id)
    assert after["status"] == "INPUT_NEEDED"
    assert after["inputRequest"]["status"] == "RESOLVED"
    assert after["nextActionAt"] < SENTINEL
    assert after["goal"]["knowledge"]["additionalHumanContext"] == ["Yes. Signed PDFs are acceptable."]
    assert_error(sim.answer(case_id, request["id"], "Yes."), 409, "INPUT_REQUEST_NOT_PENDING")

    sim.wait_for_truth(case_id, lambda t: t["status"] == "RUNNING", timeout_s=60)
    assert_error(sim.answer(case_id, request["id"], "Yes."), 409, "CASE_NOT_WAITING_FOR_INPUT")
    final = sim.wait_for_truth(case_id, lambda t: t["status"] == "COMPLETED", timeout_s=60)
    assert final["nextActionAt"] == SENTINEL

    statuses = [(entry["httpStatus"], entry["errorCode"]) for entry in final["inputs"]]
    assert statuses == [
        (409, "INPUT_REQUEST_MISMATCH"),
        (400, "INVALID_REQUEST"),
        (400, "INVALID_REQUEST"),
        (202, None),
        (409, "INPUT_REQUEST_NOT_PENDING"),
        (409, "CASE_NOT_WAITING_FOR_INPUT"),
    ]
    assert final["inputs"][1]["body"] == {"inputRequestId": request["id"], "providedContext": "   "}


def test_attachment_endpoint_returns_the_documented_fields(sim: RunningSimulator) -> None:
    case_id = sim.create_case(scenario="complete", metadata={"simAttachments": 2})
    sim.wait_for_truth(case_id, lambda t: t["status"] == "COMPLETED")
    attachments = sim.get_case(case_id)["attachments"]
    assert len(attachments) == 2
    summary_fields = {"attachmentId", "name", "size", "type", "messageId", "inboxId", "receivedAt"}
    assert all(set(attachment) == summary_fields for attachment in attachments)

    response = sim.http.get(
        f"/cases/{case_id}/attachments/{attachments[0]['attachmentId']}", headers=sim.headers()
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert set(data) == summary_fields | {"downloadUrl", "expiresAt"}
    expires = datetime.datetime.fromisoformat(data["expiresAt"].replace("Z", "+00:00"))
    assert expires > datetime.datetime.now(datetime.UTC)
    download = httpx.get(data["downloadUrl"], timeout=10)
    assert download.status_code == 200 and download.content

    unknown = sim.http.get(f"/cases/{case_id}/attachments/{uuid.uuid4()}", headers=sim.headers())
    assert_error(unknown, 404, "NOT_FOUND")


def test_unknown_routes_answer_in_the_envelope(sim: RunningSimulator) -> None:
    assert_error(sim.http.get("/no-such-route"), 404, "NOT_FOUND")
    assert_error(sim.http.delete("/cases", headers=sim.headers()), 405, "METHOD_NOT_ALLOWED")


def test_reset_forgets_every_case(sim: RunningSimulator) -> None:
    case_id = sim.create_case(step_ms=SLOW)
    sim.reset()
    assert_error(sim.http.get(f"/cases/{case_id}", headers=sim.headers()), 404, "CASE_NOT_FOUND")
    assert sim.http.get(f"/_sim/cases/{case_id}").status_code == 404
