"""Hostile input the ingress can judge is never a 5xx: JSON nested too deep is 400, ids that cannot be a
Kafka key or header (lone surrogates, oversized) are quarantined, and a record Kafka refuses for its size
is 413, not a retryable 503. Also requests the HTTP parser refuses, and odd Content-Length or signature
headers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from offload_bridge.ingress.auth import SignatureError, secret_key, verify
from offload_bridge.ingress.bounds import MAX_ID_BYTES, MAX_JSON_DEPTH
from offload_bridge.ingress.publisher import Publisher, PublishFailed, RecordTooLarge
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID, topic_name
from tests.ingress_support import JSON, Ingress, event_body, read_topic, record_at, running_ingress

TOKEN = "tok-hostile-93af"
MAX_BYTES = 1024 * 1024


@pytest.fixture(scope="module")
def hostile_settings(kafka_broker: str) -> Iterator[Settings]:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("ing-hostile"),
        offload_webhook_tokens=SecretStr(TOKEN),
    )
    yield settings
    delete_topics_with_prefix(settings)


@pytest.fixture(scope="module")
def ingress(hostile_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    with running_ingress(hostile_settings, tmp_path_factory.mktemp("ingress-hostile")) as running:
        yield running


def _post(ingress: Ingress, body: bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{ingress.url}/webhooks/offload/{TOKEN}", content=body, headers={**JSON, **headers}, timeout=60
    )


def _error_code(response: httpx.Response) -> str:
    answer = response.json()
    assert answer["ok"] is False and set(answer["error"]) == {"code", "message"}, answer
    code: str = answer["error"]["code"]
    return code


def _nested(depth: int, kind: str, inner: bytes = b'"deep"') -> bytes:
    if kind == "array":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + inner + b"}" * depth


# --- deep nesting: a RecursionError escaped json.loads (500; 50,000 levels dropped the connection) ---


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 20_000, 50_000, 150_000])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_json_nested_too_deep_is_400_invalid_json(
    ingress: Ingress, hostile_settings: Settings, depth: int, kind: str
) -> None:
    marker = f"deep-{uuid.uuid4().hex}"
    response = _post(ingress, _nested(depth, kind, json.dumps(marker).encode()))
    assert response.status_code == 400, response.text
    assert _error_code(response) == "INVALID_JSON"
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in response.json()["error"]["message"]
    if depth < 1000:
        for spec in (CASE_EVENTS, CASE_EVENTS_INVALID):
            assert not [r for r in read_topic(hostile_settings, spec) if marker.encode() in (r.value or b"")]


def test_an_event_nested_up_to_the_limit_is_published(ingress: Ingress, hostile_settings: Settings) -> None:
    # The envelope and data take two levels; metadata fills the rest up to the limit exactly.
    skeleton = json.dumps(event_body(metadata="HOLE")).encode()
    body = skeleton.replace(b'"HOLE"', _nested(MAX_JSON_DEPTH - 2, "object", b"1"))
    response = _post(ingress, body)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert record_at(hostile_settings, CASE_EVENTS, data["partition"], data["offset"]).value == body


# --- lone surrogates: "\udfff" decodes to a str with no UTF-8 form; encoding the key raised (500) ---


def test_a_lone_surrogate_in_case_id_of_a_bad_event_is_quarantined_without_a_key(
    ingress: Ingress, hostile_settings: Settings
) -> None:
    event_id = f"evt_sur_{uuid.uuid4().hex}"
    body = b'{"event_id":"%s","data":{"caseId":"sur\\udfff"}}' % event_id.encode()
    response = _post(ingress, body)
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert data["quarantined"] is True and data["eventId"] == event_id
    record = record_at(hostile_settings, CASE_EVENTS_INVALID, data["partition"], data["offset"])
    assert record.value == body, "the body is kept byte for byte"
    assert record.key is None
    assert b"data.caseId" in record.headers["validation_error"]


def test_lone_surrogates_in_a_complete_event_quarantine_it(
    ingress: Ingress, hostile_settings: Settings
) -> None:
    cases = [(b"sur\\udfff", b"evt_%s" % uuid.uuid4().hex.encode()), (b"case-1", b"e\\ud800")]
    for case_id, event_id in cases:
        body = (
            b'{"event_id":"%s","event_type":"case.completed","timestamp":1,'
            b'"data":{"caseId":"%s","status":"COMPLETED"}}' % (event_id, case_id)
        )
        response = _post(ingress, body)
        assert response.status_code == 202, response.text
        data = response.json()["data"]
        record = record_at(hostile_settings, CASE_EVENTS_INVALID, data["partition"], data["offset"])
        assert record.value == body
        if b"\\u" in case_id:
            assert record.key is None
            assert record.headers["event_id"] == event_id
        else:
            assert record.key == case_id
            assert "event_id" not in record.headers, "an id with no UTF-8 form is only in the body"
            assert data["eventId"] is None


# --- an oversized caseId: the Kafka key made the record too large (503 KAFKA_UNAVAILABLE) ---


def _near_limit_body(case_id: str) -> bytes:
    skeleton = json.dumps(event_body(case_id=case_id, padding="")).encode()
    body = skeleton.replace(b'"padding": ""', b'"padding": "' + b"x" * (MAX_BYTES - len(skeleton)) + b'"')
    assert len(body) == MAX_BYTES
    return body


def test_a_500_kb_case_id_in_a_body_under_the_limit_is_quarantined_not_503(
    ingress: Ingress, hostile_settings: Settings
) -> None:
    body = _near_limit_body("c" * 500_000)
    response = _post(ingress, body)
    assert response.status_code == 202, response.text
    data = response.json()["data"]
    assert data["quarantined"] is True
    record = record_at(hostile_settings, CASE_EVENTS_INVALID, data["partition"], data["offset"])
    assert record.value == body
    assert record.key is None, "an oversized caseId is never a key"
    assert record.headers["validation_error"] == f"data.caseId: longer than {MAX_ID_BYTES} bytes".encode()


def test_case_id_and_event_id_are_bounded_at_the_documented_limit(
    ingress: Ingress, hostile_settings: Settings
) -> None:
    longest = "é" * (MAX_ID_BYTES // 2)  # two bytes each: the limit counts UTF-8 bytes
    response = _post(ingress, json.dumps(event_body(case_id=longest)).encode())
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert record_at(hostile_settings, CASE_EVENTS, data["partition"], data["offset"]).key == longest.encode()

    for body in (event_body(case_id=longest + "c"), event_body(event_id="e" * (MAX_ID_BYTES + 1))):
        response = _post(ingress, json.dumps(body).encode())
        assert response.status_code == 202, response.text
        assert response.json()["data"]["quarantined"] is True


# --- a record Kafka refuses for its size: permanent, so 413 and not a retryable 503 ---


async def _connected_publisher(settings: Settings) -> Publisher:
    publisher = Publisher(settings)
    await publisher.start()
    for _ in range(300):
        if publisher.connected:
            return publisher
        await asyncio.sleep(0.1)
    raise AssertionError("the producer did not connect")


async def test_a_record_over_the_producer_limit_is_record_too_large(hostile_settings: Settings) -> None:
    ensure_topics(hostile_settings, (CASE_EVENTS,))
    publisher = await _connected_publisher(hostile_settings)
    try:
        topic = topic_name(CASE_EVENTS, hostile_settings)
        with pytest.raises(RecordTooLarge, match="MSG_SIZE_TOO_LARGE"):
            await publisher.publish(topic, b"k" * MAX_BYTES, b"v" * MAX_BYTES, [])
        assert (await publisher.publish(topic, b"k", b"v", [])).offset >= 0, "a small record still goes"
    finally:
        await publisher.stop()


@pytest.fixture
def small_record_topics(kafka_broker: str) -> Iterator[Settings]:
    """Topics whose broker-side record limit (4 KiB) is below the ingress's body limit."""
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("ing-small"),
        offload_webhook_tokens=SecretStr(TOKEN),
    )
    small = {"max.message.bytes": "4096"}
    ensure_topics(
        settings,
        [dataclasses.replace(spec, extra_config=small) for spec in (CASE_EVENTS, CASE_EVENTS_INVALID)],
    )
    yield settings
    delete_topics_with_prefix(settings)


async def test_the_broker_refusing_a_record_for_its_size_is_record_too_large(
    small_record_topics: Settings,
) -> None:
    publisher = await _connected_publisher(small_record_topics)
    try:
        topic = topic_name(CASE_EVENTS, small_record_topics)
        with pytest.raises(PublishFailed) as refused:
            await publisher.publish(topic, b"k", b"v" * 20_000, [])
        assert isinstance(refused.value, RecordTooLarge), refused.value
    finally:
        await publisher.stop()


def test_a_webhook_the_topic_refuses_for_its_size_is_413_not_503(
    small_record_topics: Settings, tmp_path: Path
) -> None:
    with running_ingress(small_record_topics, tmp_path) as small:
        assert _post(small, json.dumps(event_body()).encode()).status_code == 200
        response = _post(small, json.dumps(event_body(padding="x" * 20_000)).encode())
        assert response.status_code == 413, response.text
        assert _error_code(response) == "PAYLOAD_TOO_LARGE"
        assert "Retry-After" not in response.headers
        assert "MSG_SIZE_TOO_LARGE" in response.json()["error"]["message"]


# --- requests that never reach the application, and headers int() cannot read ---


def _raw(ingress: Ingress, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", ingress.port), timeout=20) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 2\r\nContent-Length: 3\r\n",
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
        b"Content-Length: -2\r\n",
        b"Content-Length: 99999999999999999999999999\r\n",
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n",
    ],
    ids=["two-lengths", "length-and-chunked", "negative", "overflow", "bad-chunk-size"],
)
def test_a_request_the_http_parser_refuses_is_400_in_the_envelope(ingress: Ingress, framing: bytes) -> None:
    head = b"POST /webhooks/offload/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % (
        TOKEN.encode()
    )
    answer = _raw(ingress, head + framing + b"\r\n{}")
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 4"), answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["ok"] is False and set(body["error"]) == {"code", "message"}


def test_a_signature_timestamp_int_cannot_read_is_a_signature_error() -> None:
    for timestamp in ["²", "1" * 5000, "\u0661\u0666\u0661\u0664"]:  # Arabic-Indic digits
        headers = {"webhook-id": "m", "webhook-timestamp": timestamp, "webhook-signature": "v1,x"}
        with pytest.raises(SignatureError, match="unix time"):
            verify(secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), headers, b"{}", now_s=1)


def test_a_trailing_slash_is_404_in_the_envelope_not_a_bodiless_redirect(ingress: Ingress) -> None:
    for path in ("/webhooks/offload/", f"/webhooks/offload/{TOKEN}/"):
        response = httpx.post(ingress.url + path, content=b"{}", headers=JSON, follow_redirects=False)
        assert response.status_code == 404, response.text
        assert _error_code(response) == "NOT_FOUND"
