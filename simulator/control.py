"""``/_sim``: the simulator's own control surface for tests (no API key needed).

- ``GET /_sim/health``: case count, step, seed, and ``inFlight``: the API calls under way per endpoint.
- ``GET /_sim/faults``, ``PUT /_sim/faults``: the fault knobs and seed; PUT changes only the fields it names,
  and a ``seed`` restarts the random streams.
- ``GET /_sim/cases``: every case id; ``GET /_sim/cases/{id}``: the truth, with every input received, every
  read of the case (``reads``: when, and whether with the transcript) and every webhook with what became
  of it.
- ``POST /_sim/reset``: forget every case, restore the startup faults and seed.
- ``GET /_sim/files/{attachmentId}``: the bytes behind an attachment's ``downloadUrl``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from offload_bridge.schemas.validation import describe_validation_error
from offload_bridge.simulator.faults import FaultConfig
from offload_bridge.simulator.models import error, ok
from offload_bridge.simulator.state import Simulator, simulator_of

router = APIRouter(prefix="/_sim")


def _faults_view(sim: Simulator) -> dict[str, Any]:
    return {"seed": sim.faults.seed, "faults": sim.faults.config.model_dump(mode="json")}


@router.get("/health")
async def health(request: Request) -> Response:
    sim = simulator_of(request)
    in_flight = {endpoint: count for endpoint, count in sim.in_flight.items() if count}
    return ok(
        {"cases": len(sim.store.cases), "stepMs": sim.settings.step_ms, "seed": sim.faults.seed,
         "inFlight": in_flight}
    )  # fmt: skip


@router.get("/faults")
async def get_faults(request: Request) -> Response:
    return ok(_faults_view(simulator_of(request)))


@router.put("/faults")
async def put_faults(request: Request) -> Response:
    sim = simulator_of(request)
    try:
        changes = json.loads(await request.body())
    except ValueError:
        return error(400, "INVALID_REQUEST", "the body must be JSON")
    if not isinstance(changes, dict):
        return error(400, "INVALID_REQUEST", "the body must be a JSON object")
    seed = changes.pop("seed", None)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        return error(400, "INVALID_REQUEST", "seed: an integer")
    try:
        config = FaultConfig.model_validate({**sim.faults.config.model_dump(), **changes})
    except ValidationError as invalid:
        return error(400, "INVALID_REQUEST", describe_validation_error(invalid))
    sim.faults.replace(config, seed)
    return ok(_faults_view(sim))


@router.get("/cases")
async def list_cases(request: Request) -> Response:
    return ok({"caseIds": list(simulator_of(request).store.cases)})


@router.get("/cases/{case_id}")
async def case_truth(request: Request, case_id: str) -> Response:
    case = simulator_of(request).store.get(case_id)
    if case is None:
        return error(404, "CASE_NOT_FOUND", f"case {case_id} not found")
    return ok(case.truth())


@router.post("/reset")
async def reset(request: Request) -> Response:
    sim = simulator_of(request)
    sim.reset()
    return ok(_faults_view(sim))


@router.get("/files/{attachment_id}")
async def attachment_file(request: Request, attachment_id: str) -> Response:
    for case in simulator_of(request).store.cases.values():
        for attachment in case.attachments:
            if attachment["attachmentId"] == attachment_id:
                content = f"simulated {attachment['name']} of case {case.case_id}\n".encode()
                return Response(content, media_type=attachment["type"])
    return error(404, "NOT_FOUND", f"file {attachment_id} not found")
