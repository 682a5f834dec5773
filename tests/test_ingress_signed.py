"""An ingress with no path token but a Standard Webhooks secret: the bare path is open (with a warning)
and only correctly signed webhooks are published."""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import standardwebhooks
from pydantic import SecretStr

from offload_bridge.ingress.auth import secret_key, sign
from offload_bridge.settings import Settings
from offload_bridge.testing import unique_prefix
from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID
from tests.ingress_support import JSON, Ingress, event_body, read_topic, record_at, running_ingress

# Unpadded base64, as secrets are often copied: the official standardwebhooks library takes it, so must we.
SECRET = "whsec_QDqsZTd26WtI3jz8frN4Ag"


@pytest.fixture(scope="module")
def signed_settings(kafka_broker: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("ing-signed"),
        offload_webhook_secret=SecretStr(SECRET),
    )


@pytest.fixture(scope="module")
def signed_ingress(signed_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    with running_ingress(signed_settings, tmp_path_factory.mktemp("ingress-signed")) as running:
        yield running


def _signed_headers(body: bytes, timestamp: int | None = None, message_id: str = "msg_1") -> dict[str, str]:
    moment = int(time.time()) if timestamp is None else timestamp
    return {
        **JSON,
        "webhook-id": message_id,
        "webhook-timestamp": str(moment),
        "webhook-signature": sign(secret_key(SECRET), message_id, moment, body),
    }


def test_open_path_logs_a_warning_at_start(signed_ingress: Ingress) -> None:
    assert "OFFLOAD_WEBHOOK_TOKENS is not set" in signed_ingress.log()


def test_a_signed_webhook_on_the_bare_path_is_published(
    signed_ingress: Ingress, signed_settings: Settings
) -> None:
    body = json.dumps(event_body()).encode()
    response = httpx.post(
        f"{signed_ingress.url}/webhooks/offload", content=body, headers=_signed_headers(body)
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert record_at(signed_settings, CASE_EVENTS, data["partition"], data["offset"]).value == body


def test_a_webhook_signed_by_the_official_standardwebhooks_library_is_published(
    signed_ingress: Ingress, signed_settings: Settings
) -> None:
    body = json.dumps(event_body()).encode()
    message_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.datetime.now(tz=datetime.UTC)
    signature = standardwebhooks.Webhook(SECRET).sign(message_id, now, body.decode())
    headers = {
        **JSON,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    response = httpx.post(f"{signed_ingress.url}/webhooks/offload", content=body, headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert record_at(signed_settings, CASE_EVENTS, data["partition"], data["offset"]).value == body


def test_a_token_path_is_open_too_when_no_token_is_configured(signed_ingress: Ingress) -> None:
    body = json.dumps(event_body()).encode()
    response = httpx.post(
        f"{signed_ingress.url}/webhooks/offload/any", content=body, headers=_signed_headers(body)
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("problem", ["unsigned", "tampered", "stale", "wrong-secret"])
def test_badly_signed_webhooks_are_401_and_publish_nothing(
    signed_ingress: Ingress, signed_settings: Settings, problem: str
) -> None:
    marker = f"evt_sig_{uuid.uuid4().hex}"
    body = json.dumps(event_body(event_id=marker)).encode()
    headers = _signed_headers(body)
    if problem == "unsigned":
        headers = JSON
    elif problem == "tampered":
        body = body.replace(b"COMPLETED", b"FAILED")
    elif problem == "stale":
        headers = _signed_headers(body, timestamp=int(time.time()) - 600)
    else:
        headers["webhook-signature"] = sign(b"another key", "msg_1", headers["webhook-timestamp"], body)
    response = httpx.post(f"{signed_ingress.url}/webhooks/offload", content=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "INVALID_SIGNATURE"
    for spec in (CASE_EVENTS, CASE_EVENTS_INVALID):
        assert not [r for r in read_topic(signed_settings, spec) if marker.encode() in (r.value or b"")]
