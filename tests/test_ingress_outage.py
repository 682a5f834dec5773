"""A broker outage while the ingress keeps running: 503 KAFKA_UNAVAILABLE within the publish timeout, then
200 again once the broker is back, without restarting the ingress.

The outage is staged on a private broker (its own home, ports and data; the shared jars), never on the
shared one other tests use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from offload_bridge.kafka.local_broker import LocalBroker
from offload_bridge.settings import Settings
from offload_bridge.testing import free_port, unique_prefix
from offload_bridge.topics import CASE_EVENTS
from tests.ingress_support import JSON, event_body, record_at, running_ingress

PUBLISH_TIMEOUT_S = 3.0


@pytest.fixture
def private_broker(kafka_broker: str, tmp_path: Path) -> Iterator[LocalBroker]:
    shared = LocalBroker.from_settings(Settings())
    shared.fetch()
    home = tmp_path / "kafka"
    home.mkdir()
    (home / "libs").symlink_to(shared.libs_dir)
    broker = LocalBroker(home, free_port(), free_port())
    try:
        broker.start(timeout_s=180)
        yield broker
    finally:
        broker.stop(grace_s=10)


def _post(url: str) -> tuple[httpx.Response, bytes, float]:
    body = json.dumps(event_body()).encode()
    started = time.monotonic()
    response = httpx.post(f"{url}/webhooks/offload", content=body, headers=JSON, timeout=60)
    return response, body, time.monotonic() - started


def _poll(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s}s")


def test_broker_outage_gives_503_then_the_ingress_serves_again(
    private_broker: LocalBroker, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap_servers=private_broker.bootstrap,
        offload_topic_prefix=unique_prefix("ing-outage"),
        offload_publish_timeout_s=PUBLISH_TIMEOUT_S,
    )
    with running_ingress(settings, tmp_path) as ingress:
        response, _, _ = _post(ingress.url)
        assert response.status_code == 200, response.text

        private_broker.stop(grace_s=10)
        response, _, elapsed = _post(ingress.url)
        assert response.status_code == 503, response.text
        assert response.json()["ok"] is False
        assert response.json()["error"]["code"] == "KAFKA_UNAVAILABLE"
        assert response.headers["retry-after"].isdigit()
        assert elapsed <= PUBLISH_TIMEOUT_S + 2.0, f"answered after {elapsed:.1f}s"
        _poll(lambda: httpx.get(f"{ingress.url}/readyz", timeout=10).status_code == 503, 30, "not unready")
        assert httpx.get(f"{ingress.url}/healthz").status_code == 200, "alive while Kafka is away"

        private_broker.start(timeout_s=180)
        answered: list[tuple[httpx.Response, bytes]] = []

        def served_again() -> bool:
            response, body, _ = _post(ingress.url)
            answered.append((response, body))
            return response.status_code == 200

        _poll(served_again, 90, "no 200 after the broker came back")
        assert {r.status_code for r, _ in answered} <= {200, 503}
        response, body = answered[-1]
        data = response.json()["data"]
        assert record_at(settings, CASE_EVENTS, data["partition"], data["offset"]).value == body
        assert httpx.get(f"{ingress.url}/readyz", timeout=10).status_code == 200
        assert ingress.process.process is not None and ingress.process.process.poll() is None, (
            "never restarted"
        )
