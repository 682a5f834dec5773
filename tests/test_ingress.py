"""The ingress as a real process on the real broker: webhooks land byte for byte, every refusal answers
in Offload's envelope and publishes nothing, bad schemas are quarantined, many posts land exactly once."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from offload_bridge.settings import Settings
from offload_bridge.testing import unique_prefix
from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID
from tests.ingress_support import (
    JSON,
    SEED_COMPLETED,
    SEED_INPUT_NEEDED,
    Ingress,
    event_body,
    event_ids,
    read_topic,
    record_at,
    running_ingress,
)

TOKEN = "tok-current-5b1e"
OLD_TOKEN = "tok-previous-77c2"
MAX_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def ingress_settings(kafka_broker: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("ing"),
        offload_webhook_tokens=SecretStr(f"{TOKEN}, {OLD_TOKEN}"),
    )


@pytest.fixture(scope="module")
def ingress(ingress_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    with running_ingress(ingress_settings, tmp_path_factory.mktemp("ingress")) as running:
        yield running


def _post(ingress: Ingress, body: bytes, token: str | None = TOKEN, **headers: str) -> httpx.Response:
    path = f"/webhooks/offload/{token}" if token is not None else "/webhooks/offload"
    return httpx.post(ingress.url + path, content=body, headers={**JSON, **headers}, timeout=30)


def _assert_nothing_published(settings: Settings, marker: str) -> None:
    for spec in (CASE_EVENTS, CASE_EVENTS_INVALID):
        records = read_topic(settings, spec)
        assert not [r for r in records if marker.encode() in (r.value or b"")], (
            f"{marker} reached {spec.name}"
        )


@pytest.mark.parametrize("seed", [SEED_INPUT_NEEDED, SEED_COMPLETED], ids=["input_needed", "completed"])
def test_seed_payloads_land_byte_for_byte_with_key_and_headers(
    ingress: Ingress, ingress_settings: Settings, seed: Path
) -> None:
    body = seed.read_bytes()
    sent = json.loads(body)
    before_ms = int(time.time() * 1000)
    response = _post(ingress, body)
    after_ms = int(time.time() * 1000)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True
    assert answer["data"]["eventId"] == sent["event_id"]

    record = record_at(ingress_settings, CASE_EVENTS, answer["data"]["partition"], answer["data"]["offset"])
    assert record.value == body, "the value must be the request body byte for byte"
    assert record.key == sent["data"]["caseId"].encode()
    assert record.headers["event_type"] == sent["event_type"].encode()
    assert record.headers["event_id"] == sent["event_id"].encode()
    assert record.headers["source"] == b"webhook"
    received_at = record.headers["received_at"]
    assert received_at.isdigit(), "received_at is unix ms as ASCII digits"
    assert before_ms - 1000 <= int(received_at) <= after_ms + 1000


def test_a_rotated_out_token_still_in_the_list_is_accepted(ingress: Ingress) -> None:
    response = _post(ingress, json.dumps(event_body()).encode(), token=OLD_TOKEN)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "token", [None, "wrong-token", TOKEN + "x", TOKEN[:-1]], ids=["bare", "wrong", "long", "short"]
)
def test_missing_or_bad_token_is_401_and_publishes_nothing(
    ingress: Ingress, ingress_settings: Settings, token: str | None
) -> None:
    marker = f"unauth-{uuid.uuid4().hex}"
    response = _post(ingress, json.dumps(event_body(event_id=marker)).encode(), token=token)
    assert response.status_code == 401
    assert response.json() == {
        "ok": False,
        "error": {"code": "UNAUTHORIZED", "message": "missing or unknown webhook token"},
    }
    _assert_nothing_published(ingress_settings, marker)


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b"\xff\xfe\x00garbage", b"[1, 2]", b'"a string"', b"42", b"null"]
)
def test_not_json_or_not_an_object_is_400_invalid_json(ingress: Ingress, body: bytes) -> None:
    response = _post(ingress, body)
    assert response.status_code == 400
    error = response.json()
    assert error["ok"] is False
    assert error["error"]["code"] == "INVALID_JSON"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415_and_publishes_nothing(
    ingress: Ingress, ingress_settings: Settings, content_type: str | None
) -> None:
    marker = f"media-{uuid.uuid4().hex}"
    headers = {"content-type": content_type} if content_type else {}
    body = json.dumps(event_body(event_id=marker)).encode()
    with httpx.Client(timeout=30) as client:
        request = client.build_request("POST", f"{ingress.url}/webhooks/offload/{TOKEN}", content=body)
        request.headers.pop("content-type", None)
        request.headers.update(headers)
        response = client.send(request)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    _assert_nothing_published(ingress_settings, marker)


def test_json_content_type_with_charset_is_accepted(ingress: Ingress) -> None:
    response = _post(
        ingress, json.dumps(event_body()).encode(), **{"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200, response.text


def test_schema_failure_is_quarantined_with_202_and_the_error_in_a_header(
    ingress: Ingress, ingress_settings: Settings
) -> None:
    event_id = f"evt_bad_{uuid.uuid4().hex}"
    # An input_needed event without its inputRequest and inputRequestId.
    body = json.dumps(
        {
            "event_id": event_id,
            "event_type": "case.input_needed",
            "timestamp": 1774131900300,
            "data": {"caseId": "case-quarantine", "status": "INPUT_NEEDED"},
        },
        indent=1,
    ).encode()
    response = _post(ingress, body)
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert response.json()["ok"] is True
    assert data["quarantined"] is True
    assert data["eventId"] == event_id

    record = record_at(ingress_settings, CASE_EVENTS_INVALID, data["partition"], data["offset"])
    assert record.value == body
    assert record.key == b"case-quarantine"
    error = record.headers["validation_error"].decode()
    assert "inputRequest" in error and "inputRequestId" in error
    assert record.headers["source"] == b"webhook"
    assert record.headers["received_at"].isdigit()
    assert event_id not in event_ids(read_topic(ingress_settings, CASE_EVENTS)), "not on case-events"


def test_quarantined_record_without_a_readable_case_id_has_no_key(
    ingress: Ingress, ingress_settings: Settings
) -> None:
    body = json.dumps({"event_id": f"evt_{uuid.uuid4().hex}", "hello": "world"}).encode()
    response = _post(ingress, body)
    assert response.status_code == 202
    data = response.json()["data"]
    record = record_at(ingress_settings, CASE_EVENTS_INVALID, data["partition"], data["offset"])
    assert record.key is None
    assert record.value == body


def test_unknown_case_event_type_is_accepted_with_the_common_fields(
    ingress: Ingress, ingress_settings: Settings
) -> None:
    sent = event_body()
    sent["event_type"] = "case.reassigned"
    body = json.dumps(sent).encode()
    response = _post(ingress, body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    record = record_at(ingress_settings, CASE_EVENTS, data["partition"], data["offset"])
    assert record.headers["event_type"] == b"case.reassigned"


def test_a_body_of_exactly_the_limit_is_accepted_byte_for_byte(
    ingress: Ingress, ingress_settings: Settings
) -> None:
    skeleton = json.dumps(event_body(padding="")).encode()
    body = skeleton.replace(b'"padding": ""', b'"padding": "' + b"x" * (MAX_BYTES - len(skeleton)) + b'"')
    assert len(body) == MAX_BYTES
    response = _post(ingress, body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert record_at(ingress_settings, CASE_EVENTS, data["partition"], data["offset"]).value == body


def _raw_request(ingress: Ingress, head: str, first_part: bytes) -> bytes:
    """Send a request head and only the first part of its body, then read what the server answers."""
    with socket.create_connection(("127.0.0.1", ingress.port), timeout=20) as connection:
        connection.sendall(head.encode() + first_part)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_declared_oversized_body_is_413_before_the_body_is_sent(ingress: Ingress) -> None:
    declared = 10 * MAX_BYTES
    head = (
        f"POST /webhooks/offload/{TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    # Only 100 of the declared bytes are ever sent: an answer proves the server did not wait for the rest.
    answer = _raw_request(ingress, head, b"{" + b" " * 99)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":"PAYLOAD_TOO_LARGE"' in answer


def test_streamed_oversized_body_is_413_once_the_limit_is_passed(ingress: Ingress) -> None:
    head = (
        f"POST /webhooks/offload/{TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * 65536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    # Just over the limit, and the chunked body is never terminated: the server must count and refuse.
    chunks = MAX_BYTES // len(chunk) + 1
    answer = _raw_request(ingress, head, framed * chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":"PAYLOAD_TOO_LARGE"' in answer


def test_health_readiness_and_metrics(ingress: Ingress) -> None:
    assert httpx.get(f"{ingress.url}/healthz").json() == {"ok": True, "data": {"status": "alive"}}
    ready = httpx.get(f"{ingress.url}/readyz")
    assert ready.status_code == 200
    assert _post(ingress, json.dumps(event_body()).encode()).status_code == 200
    assert _post(ingress, b"[]").status_code == 400
    metrics = httpx.get(f"{ingress.url}/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    published = [
        line
        for line in text.splitlines()
        if line.startswith('offload_ingress_requests_total{outcome="published"}')
    ]
    assert published and float(published[0].split()[-1]) >= 1
    assert 'offload_ingress_requests_total{outcome="invalid_json"}' in text
    assert 'offload_ingress_publish_seconds_bucket{le="0.005",topic_kind="events"}' in text


def test_unknown_path_answers_in_the_envelope(ingress: Ingress) -> None:
    response = httpx.get(f"{ingress.url}/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


def test_a_thousand_concurrent_posts_each_land_exactly_once(
    ingress: Ingress, ingress_settings: Settings
) -> None:
    marker = f"evt_conc_{uuid.uuid4().hex[:8]}_"
    bodies = [
        json.dumps(event_body(event_id=f"{marker}{n}", case_id=f"case-{n % 50}")).encode()
        for n in range(1000)
    ]

    async def post_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        # At most 200 posts in flight, one per connection: the 800 others queue here rather than in
        # httpcore's pool, whose queue costs the client seconds of CPU per hundred waiting requests.
        in_flight = asyncio.Semaphore(200)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            url = f"{ingress.url}/webhooks/offload/{TOKEN}"

            async def post(body: bytes) -> httpx.Response:
                async with in_flight:
                    return await client.post(url, content=body, headers=JSON)

            return await asyncio.gather(*(post(body) for body in bodies))

    responses = asyncio.run(post_all())
    assert Counter(r.status_code for r in responses) == {200: 1000}
    positions = {(r.json()["data"]["partition"], r.json()["data"]["offset"]) for r in responses}
    assert len(positions) == 1000, "every acknowledgement names its own record"

    landed = Counter(i for i in event_ids(read_topic(ingress_settings, CASE_EVENTS)) if i.startswith(marker))
    assert len(landed) == 1000, f"{1000 - len(landed)} events missing"
    assert set(landed.values()) == {1}, "no event may land twice"


def test_an_idle_keep_alive_connection_outlives_a_clients_own_idle_timeout(ingress: Ingress) -> None:
    # httpx keeps an idle connection 5 s. Were the ingress to close first (uvicorn's default is 5 s),
    # a webhook sent on the connection at that moment would meet a reset: the sender cannot know
    # whether it arrived, and Offload never sends it again.
    with httpx.Client(timeout=30, limits=httpx.Limits(keepalive_expiry=60)) as client:
        url = f"{ingress.url}/webhooks/offload/{TOKEN}"
        sockets: list[object] = []

        def post(event_id: str) -> httpx.Response:
            response = client.post(
                url, content=json.dumps(event_body(event_id=event_id)).encode(), headers=JSON
            )
            sockets.append(response.extensions["network_stream"].get_extra_info("socket"))
            return response

        marker = f"evt_idle_{uuid.uuid4().hex[:8]}"
        assert post(f"{marker}_1").status_code == 200
        time.sleep(6)
        assert post(f"{marker}_2").status_code == 200
        assert sockets[0] is sockets[1], "the second post reused the idle connection"
