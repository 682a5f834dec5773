"""Offload's public API as documented: create a case, read it, answer its question, fetch an attachment.

Order of checks on every call: injected latency and gateway faults first (they hit before the service
would), then ``x-api-key`` (401 missing/unknown, 403 inactive), then the case (404, 403 another key's),
then the body (400), then the case's state (409). ``POST /cases`` answers 201 (the docs do not say 201 or
202). The 409 checks of ``POST /cases/{id}/input`` run in the docs' order: the case is not INPUT_NEEDED ->
``CASE_NOT_WAITING_FOR_INPUT``; its request is no longer PENDING -> ``INPUT_REQUEST_NOT_PENDING``; the id
is not the active request's -> ``INPUT_REQUEST_MISMATCH``.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from offload_bridge.schemas.validation import describe_validation_error
from offload_bridge.simulator.engine import DEFAULT_SCENARIO, SCENARIOS
from offload_bridge.simulator.faults import Endpoint, EndpointFault, error_response
from offload_bridge.simulator.models import CreateCaseRequest, ProvideInputRequest, error, ok
from offload_bridge.simulator.state import Simulator, simulator_of
from offload_bridge.simulator.store import Case, now_ms

router = APIRouter()

ATTACHMENT_URL_TTL_S = 3600
MAX_SIM_ATTACHMENTS = 20
MAX_SIM_LATENCY_MS = 600_000


async def _case_latency(sim: Simulator, case_id: str) -> None:
    """A slow case: ``metadata.simLatencyMs`` delays every call about it (the other cases stay fast)."""
    case = sim.store.get(case_id)
    metadata = case.request.metadata if case is not None else None
    latency = metadata.get("simLatencyMs", 0) if isinstance(metadata, dict) else 0
    if latency:
        await asyncio.sleep(latency / 1000)


async def _guarded(
    request: Request,
    endpoint: Endpoint,
    handle: Callable[[Simulator, str], Awaitable[Response]],
    on_fault: Callable[[Simulator, EndpointFault], None] | None = None,
) -> Response:
    """Latency, gateway faults and authentication around one endpoint's handler."""
    sim = simulator_of(request)
    sim.in_flight[endpoint] += 1
    try:
        return await _checked(request, sim, endpoint, handle, on_fault)
    finally:
        sim.in_flight[endpoint] -= 1


async def _checked(
    request: Request,
    sim: Simulator,
    endpoint: Endpoint,
    handle: Callable[[Simulator, str], Awaitable[Response]],
    on_fault: Callable[[Simulator, EndpointFault], None] | None,
) -> Response:
    if sim.faults.config.latency_ms:
        await asyncio.sleep(sim.faults.config.latency_ms / 1000)
    fault = sim.faults.endpoint_fault(endpoint)
    if fault is not None and fault.when == "before":
        if on_fault is not None:
            on_fault(sim, fault)
        return error_response(fault)
    key = request.headers.get("x-api-key")
    settings = sim.settings
    if not key or key not in settings.api_key_set | settings.inactive_api_key_set:
        return error(401, "UNAUTHORIZED", "missing or invalid x-api-key")
    if key in settings.inactive_api_key_set:
        return error(403, "FORBIDDEN", "this API key is inactive")
    response = await handle(sim, key)
    if fault is None:
        return response
    if on_fault is not None:
        on_fault(sim, fault)
    return error_response(fault)


def _owned_case(sim: Simulator, key: str, case_id: str) -> Case | Response:
    case = sim.store.get(case_id)
    if case is None:
        return error(404, "CASE_NOT_FOUND", f"case {case_id} not found")
    if case.api_key != key:
        return error(403, "FORBIDDEN", "this case belongs to another client")
    return case


async def _json_body(request: Request) -> Any:
    """The decoded body, or a 400 response."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:
        return error(400, "INVALID_REQUEST", "the body must be JSON")


def _scenario_knobs(metadata: Any, default_step_ms: int) -> tuple[str, int] | str:
    """The case's scenario and step from its metadata, or what is wrong with them."""
    if not isinstance(metadata, dict):
        return DEFAULT_SCENARIO, default_step_ms
    scenario = metadata.get("simScenario", DEFAULT_SCENARIO)
    if scenario not in SCENARIOS:
        return f"metadata.simScenario: unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}"
    step_ms = metadata.get("simStepMs", default_step_ms)
    if not isinstance(step_ms, int) or isinstance(step_ms, bool) or not 1 <= step_ms <= 3_600_000:
        return "metadata.simStepMs: an integer of milliseconds between 1 and 3600000"
    attachments = metadata.get("simAttachments", 0)
    if not isinstance(attachments, int) or isinstance(attachments, bool) or not 0 <= attachments <= 20:
        return f"metadata.simAttachments: an integer between 0 and {MAX_SIM_ATTACHMENTS}"
    latency = metadata.get("simLatencyMs", 0)
    if not isinstance(latency, int) or isinstance(latency, bool) or not 0 <= latency <= MAX_SIM_LATENCY_MS:
        return f"metadata.simLatencyMs: an integer of milliseconds between 0 and {MAX_SIM_LATENCY_MS}"
    return scenario, step_ms


@router.post("/cases")
async def create_case(request: Request) -> Response:
    async def handle(sim: Simulator, key: str) -> Response:
        limit = sim.faults.config.usage_limit
        if limit is not None and sim.store.created_per_key.get(key, 0) >= limit:
            return error(429, "USAGE_LIMIT_REACHED", f"the monthly limit of {limit} cases is reached")
        payload = await _json_body(request)
        if isinstance(payload, Response):
            return payload
        try:
            body = CreateCaseRequest.model_validate(payload)
        except ValidationError as invalid:
            return error(400, "INVALID_REQUEST", describe_validation_error(invalid))
        knobs = _scenario_knobs(body.metadata, sim.settings.step_ms)
        if isinstance(knobs, str):
            return error(400, "INVALID_REQUEST", knobs)
        scenario, step_ms = knobs
        case = sim.store.create(key, body, scenario, step_ms)
        case.next_action_at = now_ms() + step_ms
        sim.engine.start(case)
        return ok({"caseId": case.case_id}, status_code=201)

    return await _guarded(request, "create_case", handle)


@router.get("/cases/{case_id}")
async def get_case(request: Request, case_id: str) -> Response:
    async def handle(sim: Simulator, key: str) -> Response:
        await _case_latency(sim, case_id)
        case = _owned_case(sim, key, case_id)
        if isinstance(case, Response):
            return case
        flag = request.query_params.get("includeTranscript", "false").lower()
        if flag not in ("true", "false"):
            return error(400, "INVALID_REQUEST", "includeTranscript must be true or false")
        # The truth counts the reads, so a test sees how often a client really asked.
        case.reads.append({"at": now_ms(), "includeTranscript": flag == "true"})
        return ok(case.view(include_transcript=flag == "true"))

    return await _guarded(request, "get_case", handle)


@router.post("/cases/{case_id}/input")
async def provide_input(request: Request, case_id: str) -> Response:
    raw = await request.body()

    def record(sim: Simulator, status: int | None, code: str | None, fault: str | None = None) -> None:
        case = sim.store.get(case_id)
        if case is None:
            return
        try:
            received: Any = json.loads(raw)
        except ValueError:
            received = raw.decode(errors="replace")
        entry = {"at": now_ms(), "apiKey": request.headers.get("x-api-key"), "body": received}
        case.inputs.append({**entry, "httpStatus": status, "errorCode": code, "fault": fault})

    def on_fault(sim: Simulator, fault: EndpointFault) -> None:
        # The caller saw the injected error; the truth says whether the case took the answer anyway.
        case = sim.store.get(case_id)
        if fault.when == "before":
            record(sim, None, None, fault=f"{fault.error} instead of processing")
        elif case is not None and case.inputs:
            case.inputs[-1]["fault"] = f"{fault.error} after processing"

    async def handle(sim: Simulator, key: str) -> Response:
        await _case_latency(sim, case_id)
        response = _provide_input(sim, key, case_id, raw)
        code = None
        if response.status_code >= 400:
            code = json.loads(bytes(response.body))["error"]["code"]
        record(sim, response.status_code, code)
        return response

    return await _guarded(request, "provide_input", handle, on_fault)


def _provide_input(sim: Simulator, key: str, case_id: str, raw: bytes) -> Response:
    case = _owned_case(sim, key, case_id)
    if isinstance(case, Response):
        return case
    try:
        body = ProvideInputRequest.model_validate_json(raw)
    except ValidationError as invalid:
        return error(400, "INVALID_REQUEST", describe_validation_error(invalid))
    active = case.input_request
    if case.status != "INPUT_NEEDED" or active is None:
        return error(409, "CASE_NOT_WAITING_FOR_INPUT", f"case is {case.status}, not INPUT_NEEDED")
    if active["status"] != "PENDING":
        return error(409, "INPUT_REQUEST_NOT_PENDING", f"input request {active['id']} is {active['status']}")
    if body.inputRequestId != active["id"]:
        return error(409, "INPUT_REQUEST_MISMATCH", f"the active input request is {active['id']}")
    active["status"] = "RESOLVED"
    _append_context(case, body.providedContext)
    case.transcript.append(f"Client: {body.providedContext}")
    case.next_action_at = now_ms() + case.step_ms
    case.answered.set()
    return ok({"caseId": case.case_id, "inputRequestId": active["id"], "accepted": True}, status_code=202)


def _append_context(case: Case, answer: str) -> None:
    """The answer joins ``goal.knowledge.additionalHumanContext`` (a list, one entry per answer).

    A string ``knowledge`` becomes ``{"context": <the string>, "additionalHumanContext": [...]}``.
    """
    knowledge = case.goal.get("knowledge")
    if not isinstance(knowledge, dict):
        knowledge = {"context": knowledge}
        case.goal["knowledge"] = knowledge
    context = knowledge.get("additionalHumanContext")
    if not isinstance(context, list):
        context = [] if context is None else [context]
        knowledge["additionalHumanContext"] = context
    context.append(answer)


@router.get("/cases/{case_id}/attachments/{attachment_id}")
async def get_attachment(request: Request, case_id: str, attachment_id: str) -> Response:
    async def handle(sim: Simulator, key: str) -> Response:
        case = _owned_case(sim, key, case_id)
        if isinstance(case, Response):
            return case
        found = next((a for a in case.attachments if a["attachmentId"] == attachment_id), None)
        if found is None:
            return error(404, "NOT_FOUND", f"attachment {attachment_id} not found on case {case_id}")
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=ATTACHMENT_URL_TTL_S)
        return ok(
            {
                **found,
                "downloadUrl": f"{str(request.base_url).rstrip('/')}/_sim/files/{attachment_id}",
                "expiresAt": expires.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            }
        )

    return await _guarded(request, "get_attachment", handle)
