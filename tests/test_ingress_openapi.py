"""The ingress's OpenAPI document says what the ingress does: checked by openapi-spec-validator, then by
schemathesis against a running ingress publishing to the real broker (positive and negative requests)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from pydantic import SecretStr

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from tests.ingress_support import Ingress, running_ingress
from tests.schemathesis_support import run_schemathesis

TOKEN = "tok-openapi-7f3a9c"
# Bounded: a fixed number of examples per operation and a fixed seed.


@pytest.fixture(scope="module")
def ingress_settings(kafka_broker: str) -> Iterator[Settings]:
    settings = Settings(kafka_bootstrap_servers=kafka_broker, offload_topic_prefix=unique_prefix("ing-oas"))
    ensure_topics(settings)
    yield settings
    delete_topics_with_prefix(settings)


@pytest.fixture(scope="module")
def open_ingress(ingress_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    """No token configured: the bare path and any token path publish, so schemathesis reaches Kafka."""
    with running_ingress(ingress_settings, tmp_path_factory.mktemp("ingress-oas")) as running:
        yield running


def _document(ingress: Ingress) -> dict[str, Any]:
    response = httpx.get(f"{ingress.url}/openapi.json", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def test_the_document_is_valid_openapi_and_lists_every_endpoint(open_ingress: Ingress) -> None:
    document = _document(open_ingress)
    validate(document)
    assert set(document["paths"]) == {
        "/webhooks/offload/{token}",
        "/webhooks/offload",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    webhook = document["paths"]["/webhooks/offload/{token}"]["post"]
    assert set(webhook["responses"]) == {"200", "202", "400", "401", "413", "415", "503"}
    assert list(webhook["requestBody"]["content"]) == ["application/json"]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= {
        p["name"] for p in webhook["parameters"]
    }
    assert {"InputNeededEvent", "CompletedEvent", "FailedEvent", "ErrorEnvelope"} <= set(
        document["components"]["schemas"]
    )
    assert httpx.get(f"{open_ingress.url}/docs", timeout=10).status_code == 404, "no docs UI"


def test_the_document_never_shows_a_configured_token(kafka_broker: str, tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("ing-oas-tok"),
        offload_webhook_tokens=SecretStr(TOKEN),
    )
    ensure_topics(settings)
    try:
        with running_ingress(settings, tmp_path) as ingress:
            text = httpx.get(f"{ingress.url}/openapi.json", timeout=10).text
            assert TOKEN not in text and "{token}" in text
    finally:
        delete_topics_with_prefix(settings)


def test_schemathesis_finds_no_mismatch_with_the_running_ingress(
    open_ingress: Ingress, tmp_path: Path
) -> None:
    result = run_schemathesis(f"{open_ingress.url}/openapi.json", "examples,coverage,fuzzing", 20, tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "5 selected / 5 total" in result.stdout
    assert "Traceback" not in open_ingress.log() and "unexpected error" not in open_ingress.log()
