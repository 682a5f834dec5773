"""The simulator's OpenAPI document (``/_sim/openapi.json``): Offload's API as the simulator serves it.

Written out here rather than derived from the routes: the handlers read raw requests (so that they can
check in Offload's order and answer 400 in the envelope, never FastAPI's 422), so FastAPI alone would
know neither the request bodies nor the statuses. The schemas still come from the simulator's own models.

The ``/_sim`` control surface is left out on purpose: it is no part of Offload's API, and a client or a
fuzzer working from this document must not find ``PUT /_sim/faults`` or ``POST /_sim/reset`` and change
the simulator under everyone using it. ``simulator/control.py`` and the docs (the simulator's how-to)
describe it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from offload_bridge.simulator.models import (
    Counterparty,
    CreateCaseRequest,
    ProvideInputRequest,
    SenderPersona,
)

ENVELOPE_ERROR = "ErrorEnvelope"


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorEnvelope(BaseModel):
    """Every error the simulator answers itself: ``{"ok": false, "error": {"code", "message"}}``."""

    ok: Literal[False]
    error: ErrorDetail


class GatewayMessage(BaseModel):
    """A throttle or upstream failure from in front of the service: no envelope (offload-api.md)."""

    model_config = ConfigDict(extra="allow")

    message: str


class CreatedCase(BaseModel):
    caseId: str


class CreatedCaseEnvelope(BaseModel):
    ok: Literal[True]
    data: CreatedCase


class InputRequestView(BaseModel):
    id: str
    question: str
    status: Literal["PENDING", "RESOLVED"]
    requestedAt: int


class AttachmentSummary(BaseModel):
    attachmentId: str
    name: str
    size: int
    type: str
    messageId: str
    inboxId: str
    receivedAt: int


class CaseView(BaseModel):
    caseId: str
    clientReferenceId: str | None
    status: Literal["CREATED", "RUNNING", "INPUT_NEEDED", "COMPLETED", "FAILED"]
    createdAt: int
    updatedAt: int
    nextActionAt: int
    attemptCount: int
    maxAttempts: int
    channel: Literal["EMAIL", "SMS"]
    counterparty: Counterparty
    attachments: list[AttachmentSummary]
    resultStatus: str | None
    result: Any
    goal: dict[str, Any]
    resultSchema: dict[str, Any] | None
    senderPersona: SenderPersona
    constraints: list[str]
    inputRequest: InputRequestView | None
    conversationThread: str | None


class CaseEnvelope(BaseModel):
    ok: Literal[True]
    data: CaseView


class InputAccepted(BaseModel):
    caseId: str
    inputRequestId: str
    accepted: Literal[True]


class InputAcceptedEnvelope(BaseModel):
    ok: Literal[True]
    data: InputAccepted


class AttachmentLink(AttachmentSummary):
    downloadUrl: str
    expiresAt: str


class AttachmentEnvelope(BaseModel):
    ok: Literal[True]
    data: AttachmentLink


_MODELS: tuple[type[BaseModel], ...] = (
    ErrorEnvelope,
    GatewayMessage,
    CreatedCaseEnvelope,
    CaseEnvelope,
    InputAcceptedEnvelope,
    AttachmentEnvelope,
)
_REQUEST_MODELS: tuple[type[BaseModel], ...] = (CreateCaseRequest, ProvideInputRequest)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _error(description: str) -> dict[str, Any]:
    return _json(_ref(ENVELOPE_ERROR), description)


_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait; sent by some throttles only",
        "schema": {"type": "string"},
        "required": False,
    }
}
# What any call can meet besides its own answers: the key, and the faults the simulator injects on request
# (off by default; see PUT /_sim/faults), shaped as offload-api.md says Offload's can be.
_COMMON: dict[str, dict[str, Any]] = {
    "401": _error("UNAUTHORIZED: x-api-key missing or unknown"),
    "403": _error("FORBIDDEN: the key is inactive, or the case belongs to another key"),
    "429": _json(
        {"anyOf": [_ref(ENVELOPE_ERROR), _ref("GatewayMessage")]},
        "throttled: USAGE_LIMIT_REACHED in the envelope (POST /cases), or an API gateway's answer "
        "without it (an injected fault)",
        _RETRY_AFTER,
    ),
    "500": {
        "description": "INTERNAL_ERROR in the envelope, or a bare text answer (an injected fault)",
        "content": {
            "application/json": {"schema": _ref(ENVELOPE_ERROR)},
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    "502": _json(_ref("GatewayMessage"), "an upstream failure without the envelope (an injected fault)"),
    "503": _error("SERVICE_UNAVAILABLE (an injected fault)"),
}
_CASE_ID = {
    "name": "caseId",
    "in": "path",
    "required": True,
    "description": "the caseId POST /cases answered",
    "schema": {"type": "string"},
}
_METADATA_KNOBS = (
    "Opaque to Offload and echoed in webhooks. The simulator reads these keys of an object: simScenario "
    "(complete, input_then_complete, input_twice_then_complete, fail_max_retries, fail_bounced), simStepMs "
    "(1 to 3600000), simAttachments (0 to 20), simLatencyMs (0 to 600000); a bad value is 400."
)


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, dict[str, Any]],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {**responses, **_COMMON},
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    return operation


# The http(s) URLs any URL parser takes: a host name whose last label starts with a letter (a numeric one
# would be read as an IPv4 address), printable ASCII after it. The simulator takes more; this is what a
# client can count on.
_WEBHOOK_URL = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9]{1,63}\.)*[A-Za-z][A-Za-z0-9]{0,62}(:[0-9]{1,4})?(/[!-~]*)?$"
)


def _request_schemas() -> dict[str, Any]:
    """The request models' schemas, with what their validators check spelled out for clients."""
    _, top = models_json_schema(
        [(model, "validation") for model in _REQUEST_MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = top["$defs"]
    non_blank = {"pattern": r"\S"}  # the validators refuse blank text
    schemas["Goal"]["properties"]["objective"].update(non_blank)
    schemas["Counterparty"]["properties"]["address"].update(non_blank)
    schemas["Counterparty"]["properties"]["name"].update(non_blank)
    schemas["SenderPersona"]["properties"]["name"].update(non_blank)
    schemas["ProvideInputRequest"]["properties"]["inputRequestId"].update(non_blank)
    schemas["ProvideInputRequest"]["properties"]["providedContext"].update(non_blank)
    create = schemas["CreateCaseRequest"]["properties"]
    create["clientWebhookUrl"] = {
        "anyOf": [{"type": "string", "pattern": _WEBHOOK_URL}, {"type": "null"}],
        "default": None,
        "description": "an http(s) URL: where the case's webhooks go",
    }
    create["metadata"] = {"description": _METADATA_KNOBS}
    return schemas


def openapi_document(version: str) -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "serialization") for model in _MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas = {**top["$defs"], **_request_schemas()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Offload API simulator",
            "version": version,
            "description": "Offload's case API as the simulator serves it (see offload-api.md). Errors use "
            'Offload\'s envelope {"ok": false, "error": {"code", "message"}}; a malformed request is 400 '
            "INVALID_REQUEST, never 422. The simulator's control surface under /_sim is not part of this "
            "document.",
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/cases": {
                "post": _operation(
                    "createCase",
                    "Create a case (not idempotent)",
                    {
                        "201": _json(_ref("CreatedCaseEnvelope"), "created; the case starts CREATED"),
                        "400": _error("INVALID_REQUEST: not JSON, or a field is missing or wrong"),
                    },
                    body="CreateCaseRequest",
                )
            },
            "/cases/{caseId}": {
                "get": _operation(
                    "getCase",
                    "Read a case",
                    {
                        "200": _json(_ref("CaseEnvelope"), "the case"),
                        "400": _error("INVALID_REQUEST: includeTranscript is neither true nor false"),
                        "404": _error("CASE_NOT_FOUND"),
                    },
                    parameters=[
                        _CASE_ID,
                        {
                            "name": "includeTranscript",
                            "in": "query",
                            "required": False,
                            "description": "true: conversationThread holds the transcript",
                            "schema": {"type": "boolean", "default": False},
                        },
                    ],
                )
            },
            "/cases/{caseId}/input": {
                "post": _operation(
                    "provideInput",
                    "Answer the case's pending question",
                    {
                        "202": _json(
                            _ref("InputAcceptedEnvelope"), "accepted; the request is RESOLVED at once"
                        ),
                        "400": _error("INVALID_REQUEST: not JSON, or a field is missing or blank"),
                        "404": _error("CASE_NOT_FOUND"),
                        "409": _error(
                            "CASE_NOT_WAITING_FOR_INPUT, INPUT_REQUEST_NOT_PENDING or INPUT_REQUEST_MISMATCH"
                        ),
                    },
                    parameters=[_CASE_ID],
                    body="ProvideInputRequest",
                )
            },
            "/cases/{caseId}/attachments/{attachmentId}": {
                "get": _operation(
                    "getAttachment",
                    "An attachment with a download URL valid for an hour",
                    {
                        "200": _json(_ref("AttachmentEnvelope"), "the attachment"),
                        "404": _error(
                            "CASE_NOT_FOUND, or NOT_FOUND for an attachment the case does not have"
                        ),
                    },
                    parameters=[
                        _CASE_ID,
                        {
                            "name": "attachmentId",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                )
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }
