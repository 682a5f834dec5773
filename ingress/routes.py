"""The ingress endpoints: webhook intake, liveness, readiness and metrics."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from offload_bridge.ingress import metrics
from offload_bridge.ingress.auth import SignatureError, token_accepted, verify
from offload_bridge.ingress.bounds import UnusableId, encode_id, load_json, usable_id
from offload_bridge.ingress.http import (
    Refusal,
    envelope,
    error_envelope,
    is_json_media_type,
    published_envelope,
    read_body,
)
from offload_bridge.ingress.publisher import Published, Publisher, PublishFailed, RecordTooLarge
from offload_bridge.schemas.events import parse_event_object
from offload_bridge.schemas.headers import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    RECEIVED_AT_HEADER,
    SOURCE_HEADER,
    VALIDATION_ERROR_HEADER,
)
from offload_bridge.schemas.validation import describe_validation_error

log = logging.getLogger(__name__)

# Longest validation message carried in a quarantined record's header.
_MAX_ERROR_HEADER = 2000

router = APIRouter()


@dataclass(frozen=True)
class IngressContext:
    publisher: Publisher
    tokens: tuple[str, ...]
    signing_key: bytes | None
    max_bytes: int
    events_topic: str
    invalid_topic: str
    retry_after_s: int


# The webhook endpoints are plain Starlette routes: they read the raw request themselves, so FastAPI's
# parameter and dependency machinery would only add work to every webhook.
async def webhook_with_token(request: Request) -> Response:
    return await _answer(request, request.path_params["token"])


async def webhook_without_token(request: Request) -> Response:
    return await _answer(request, None)


router.add_route("/webhooks/offload/{token}", webhook_with_token, methods=["POST"])
router.add_route("/webhooks/offload", webhook_without_token, methods=["POST"])


@router.get("/healthz")
async def healthz() -> Response:
    return envelope(200, {"status": "alive"})


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    context: IngressContext = request.app.state.ingress
    if await context.publisher.kafka_reachable():
        return envelope(200, {"status": "ready"})
    if not context.publisher.connected:
        return error_envelope(503, "NOT_READY", "the Kafka producer is not connected yet")
    return error_envelope(503, "NOT_READY", "Kafka does not answer")


@router.get("/openapi.json")
async def openapi_json(request: Request) -> Response:
    document: bytes = request.app.state.openapi_json
    return Response(document, media_type="application/json")


@router.get("/metrics")
async def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def _answer(request: Request, token: str | None) -> Response:
    context: IngressContext = request.app.state.ingress
    try:
        return await _receive(context, request, token)
    except Refusal as refusal:
        metrics.count(refusal.outcome)
        headers = {"Retry-After": str(context.retry_after_s)} if refusal.status == 503 else None
        return error_envelope(refusal.status, refusal.code, refusal.message, headers)


async def _receive(context: IngressContext, request: Request, token: str | None) -> Response:
    received_at = str(time.time_ns() // 1_000_000).encode()
    # With no token configured every path is open (a warning says so at start): refusing a token the
    # operator forgot to configure would lose webhooks that Offload never resends.
    if context.tokens and not token_accepted(token, context.tokens):
        raise Refusal(401, "UNAUTHORIZED", "missing or unknown webhook token", "unauthorized")
    if not is_json_media_type(request.headers.get("content-type")):
        raise Refusal(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "webhooks must be sent as application/json",
            "unsupported_media_type",
        )
    body = await read_body(request, context.max_bytes)
    if context.signing_key is not None:
        try:
            verify(context.signing_key, request.headers, body)
        except SignatureError as error:
            raise Refusal(401, "INVALID_SIGNATURE", str(error), "invalid_signature") from None
    try:
        payload = load_json(body)
    except ValueError as error:  # includes UnicodeDecodeError
        raise Refusal(400, "INVALID_JSON", f"the body is not JSON: {error}", "invalid_json") from None
    if not isinstance(payload, dict):
        raise Refusal(400, "INVALID_JSON", "the body must be a JSON object", "invalid_json")
    try:
        event = parse_event_object(payload)
    except ValidationError as error:
        problems = describe_validation_error(error, root="(body)")
        return await _quarantine(context, payload, body, received_at, problems)
    try:
        key = encode_id("data.caseId", event.data.caseId)
        event_id = encode_id("event_id", event.event_id)
        event_type = encode_id("event_type", event.event_type)
    except UnusableId as error:
        # Valid by the schema but not writable as a key or header: kept like any other bad event.
        return await _quarantine(context, payload, body, received_at, str(error))
    headers = [
        (EVENT_TYPE_HEADER, event_type),
        (EVENT_ID_HEADER, event_id),
        (RECEIVED_AT_HEADER, received_at),
        (SOURCE_HEADER, b"webhook"),
    ]
    published = await _publish(context, context.events_topic, key, body, headers)
    metrics.count("published")
    return published_envelope(event.event_id, published.partition, published.offset)


async def _quarantine(
    context: IngressContext, payload: dict[str, Any], body: bytes, received_at: bytes, problems: str
) -> Response:
    """An authenticated object that fails the schema is kept, not refused: Offload would never resend it.

    Its ids go into the key and headers only when they are usable (UTF-8, at most MAX_ID_BYTES): the body
    keeps them as sent, and the record always fits Kafka's limit.
    """
    # Backslash escapes keep a lone surrogate (or any text) writable, and the header readable.
    problem_bytes = problems[:_MAX_ERROR_HEADER].encode(errors="backslashreplace")
    event_id = usable_id(payload.get("event_id"))
    event_type = usable_id(payload.get("event_type"))
    data = payload.get("data")
    key = usable_id(data.get("caseId")) if isinstance(data, dict) else None
    headers = [
        (VALIDATION_ERROR_HEADER, problem_bytes),
        (RECEIVED_AT_HEADER, received_at),
        (SOURCE_HEADER, b"webhook"),
    ]
    if event_id is not None:
        headers.append((EVENT_ID_HEADER, event_id))
    if event_type is not None:
        headers.append((EVENT_TYPE_HEADER, event_type))
    published = await _publish(context, context.invalid_topic, key or None, body, headers)
    metrics.count("quarantined")
    shown_id = event_id.decode() if event_id is not None else None
    log.warning("quarantined webhook event_id=%s: %s", shown_id, problem_bytes.decode())
    return envelope(
        202,
        {
            "eventId": shown_id,
            "partition": published.partition,
            "offset": published.offset,
            "quarantined": True,
        },
    )


async def _publish(
    context: IngressContext, topic: str, key: bytes | None, body: bytes, headers: list[tuple[str, bytes]]
) -> Published:
    kind: metrics.TopicKind = "invalid" if topic == context.invalid_topic else "events"
    started = time.perf_counter()
    try:
        published = await context.publisher.publish(topic, key, body, headers)
    except RecordTooLarge as error:
        # Permanent: the same record can never be written, so a retryable 503 would mislead the sender.
        log.warning("webhook refused by Kafka for its size, answered 413: %s", error)
        raise Refusal(413, "PAYLOAD_TOO_LARGE", str(error), "too_large") from None
    except PublishFailed as error:
        log.error("webhook not acknowledged by Kafka, answered 503: %s", error)
        raise Refusal(503, "KAFKA_UNAVAILABLE", str(error), "kafka_unavailable") from None
    metrics.observe_publish(kind, time.perf_counter() - started)
    return published
