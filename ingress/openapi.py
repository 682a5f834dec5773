"""The ingress's OpenAPI document (``GET /openapi.json``): what Offload sends and every answer it gets.

Written out rather than derived from the routes: the webhook routes read the raw request themselves (see
``routes.py``), so FastAPI knows neither their body nor their answers. The event schemas come from the
models in ``schemas/events.py``. The document names the path token only as ``{token}``: it is built
without settings, so no configured token (or secret) can appear in it. No docs UI is served: the
ingress faces the internet, and the document is enough for tools.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from offload_bridge.schemas.events import CaseEvent, CompletedEvent, FailedEvent, InputNeededEvent

_EVENT_MODELS = (InputNeededEvent, CompletedEvent, FailedEvent, CaseEvent)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json(_ref("ErrorEnvelope"), description, headers)


_SIGNATURE_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "description": f"Standard Webhooks: {text}; required when OFFLOAD_WEBHOOK_SECRET is set (401 "
        "INVALID_SIGNATURE otherwise), ignored when it is not",
        "schema": {"type": "string"},
    }
    for name, text in (
        ("webhook-id", "the message id"),
        ("webhook-timestamp", "unix seconds, within 5 minutes of the ingress's clock"),
        ("webhook-signature", "space-separated v1,<base64 HMAC-SHA256 of id.timestamp.body>"),
    )
]

_WEBHOOK_RESPONSES: dict[str, Any] = {
    "200": _json(_ref("PublishedEnvelope"), "published to case-events; Kafka acknowledged it"),
    "202": _json(
        _ref("QuarantinedEnvelope"),
        "a JSON object that fails the event schema (or whose ids cannot be a Kafka key or header): kept on "
        "case-events.invalid, since Offload never sends a webhook twice",
    ),
    "400": _error("INVALID_JSON (not JSON, nested deeper than 128 levels, not an object) or INVALID_REQUEST"),
    "401": _error("UNAUTHORIZED (missing or unknown token) or INVALID_SIGNATURE"),
    "413": _error(
        "PAYLOAD_TOO_LARGE: above OFFLOAD_WEBHOOK_MAX_BYTES, or a record Kafka refuses for its size"
    ),
    "415": _error("UNSUPPORTED_MEDIA_TYPE: the content type is not application/json"),
    "503": _error(
        "KAFKA_UNAVAILABLE: Kafka did not acknowledge in OFFLOAD_PUBLISH_TIMEOUT_S",
        {"Retry-After": {"description": "seconds", "schema": {"type": "string"}, "required": True}},
    ),
}


def _webhook(operation_id: str, summary: str, token: bool) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    if token:
        parameters.append(
            {
                "name": "token",
                "in": "path",
                "required": True,
                "description": "one of OFFLOAD_WEBHOOK_TOKENS (any value while none is set)",
                "schema": {"type": "string"},
            }
        )
    return {
        "operationId": operation_id,
        "summary": summary,
        "parameters": [*parameters, *_SIGNATURE_HEADERS],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    # What Offload sends; any other JSON object is accepted too and quarantined (202).
                    "schema": {
                        "anyOf": [*(_ref(model.__name__) for model in _EVENT_MODELS), {"type": "object"}]
                    }
                }
            },
        },
        "responses": _WEBHOOK_RESPONSES,
    }


def _components() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in _EVENT_MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = top["$defs"]
    error = {
        "type": "object",
        "required": ["ok", "error"],
        "properties": {
            "ok": {"const": False},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    }
    published = {
        "type": "object",
        "required": ["eventId", "partition", "offset"],
        "properties": {
            "eventId": {"type": "string"},
            "partition": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    }
    quarantined = {
        "type": "object",
        "required": ["eventId", "partition", "offset", "quarantined"],
        "properties": {
            "eventId": {"type": ["string", "null"]},
            "partition": {"type": "integer"},
            "offset": {"type": "integer"},
            "quarantined": {"const": True},
        },
    }
    status = {
        "type": "object",
        "required": ["ok", "data"],
        "properties": {
            "ok": {"const": True},
            "data": {"type": "object", "properties": {"status": {"type": "string"}}},
        },
    }
    schemas.update(
        ErrorEnvelope=error,
        PublishedEnvelope=_ok(published),
        QuarantinedEnvelope=_ok(quarantined),
        StatusEnvelope=status,
    )
    return {"schemas": schemas}


def _ok(data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["ok", "data"], "properties": {"ok": {"const": True}, "data": data}}


def openapi_document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "offload-bridge ingress",
            "version": version,
            "description": "Receives Offload's webhooks and publishes each, byte for byte, to Kafka. "
            'Errors use Offload\'s envelope {"ok": false, "error": {"code", "message"}}; any other path is '
            "404 NOT_FOUND.",
        },
        "paths": {
            "/webhooks/offload/{token}": {
                "post": _webhook("receiveWebhook", "Offload's webhook, authenticated by its path token", True)
            },
            "/webhooks/offload": {
                "post": _webhook(
                    "receiveWebhookWithoutToken",
                    "Offload's webhook while no OFFLOAD_WEBHOOK_TOKENS is set (401 UNAUTHORIZED otherwise)",
                    False,
                )
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness",
                    "responses": {"200": _json(_ref("StatusEnvelope"), "the process is alive")},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Readiness",
                    "responses": {
                        "200": _json(_ref("StatusEnvelope"), "the producer is connected and Kafka answers"),
                        "503": _error("NOT_READY"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": _components(),
    }
