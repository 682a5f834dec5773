"""Hostile input the ingress can judge is never a 5xx: a record Kafka refuses for its size is 413, not a
retryable 503."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from ingress.publisher import Publisher, PublishFailed, RecordTooLarge
from offload_bridge.admin import ensure_topics
from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID, topic_name
from tests.ingress_support import JSON, Ingress, event_body, running_ingress

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
