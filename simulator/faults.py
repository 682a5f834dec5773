"""Fault injection: what the simulator breaks on purpose, and the seeded dice that decide when.

Every decision draws from its own ``random.Random`` stream derived from the seed (one for webhooks, one per
API endpoint), so the pattern of faults an endpoint shows depends only on the seed and how many calls that
endpoint received, not on what else ran at the same time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

Endpoint = Literal["create_case", "get_case", "provide_input", "get_attachment"]
ENDPOINTS: tuple[Endpoint, ...] = ("create_case", "get_case", "provide_input", "get_attachment")

# "429" is a throttle without Retry-After, "429-retry-after" one with it; "-bare" kinds answer without the
# envelope, the way an API gateway or an uncaught upstream error does.
ErrorKind = Literal["500", "500-bare", "502-bare", "503", "429", "429-retry-after"]
ERROR_KINDS: tuple[ErrorKind, ...] = ("500", "500-bare", "502-bare", "503", "429", "429-retry-after")


class EndpointFault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=0.0, ge=0.0, le=1.0, description="share of calls answered with the error")
    error: ErrorKind = "500"
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After value of the 429-retry-after kind")
    # "after": the request is fully processed and only the response is lost, like a gateway timing out
    # after the backend committed; "before": the request never reaches the case.
    when: Literal["before", "after"] = "before"


class FaultConfig(BaseModel):
    """The simulator's fault knobs; all off by default."""

    model_config = ConfigDict(extra="forbid")

    webhook_drop_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    webhook_duplicate_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    webhook_delay_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    webhook_delay_ms: int = Field(default=0, ge=0, le=600_000)
    latency_ms: int = Field(default=0, ge=0, le=600_000, description="added to every API response")
    usage_limit: int | None = Field(
        default=None, ge=0, description="cases one API key may create before 429 USAGE_LIMIT_REACHED"
    )
    endpoints: dict[Endpoint, EndpointFault] = Field(default_factory=dict)


def parse_error_spec(spec: str) -> dict[Endpoint, EndpointFault]:
    """Parse ``ENDPOINT=RATE[:KIND[:when]]`` items separated by commas, e.g. ``provide_input=0.3:503``.

    ``all`` as the endpoint applies the same fault to every endpoint. Raises ValueError.
    """
    faults: dict[Endpoint, EndpointFault] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, rest = item.partition("=")
        if not sep:
            raise ValueError(f"expected ENDPOINT=RATE[:KIND[:before|after]], got {item!r}")
        fields = rest.split(":")
        values: dict[str, object] = {"rate": fields[0]}
        if len(fields) > 1:
            values["error"] = fields[1]
        if len(fields) > 2:
            values["when"] = fields[2]
        if len(fields) > 3:
            raise ValueError(f"too many ':' parts in {item!r}")
        fault = EndpointFault.model_validate(values)
        targets = ENDPOINTS if name == "all" else (name,)
        for target in targets:
            if target not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {target!r}; one of {', '.join(ENDPOINTS)}, all")
            faults[target] = fault
    return faults


class Faults:
    """The current fault configuration and its random streams."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self._reseed()

    def _reseed(self) -> None:
        self._webhook_random = random.Random(f"{self.seed}:webhooks")
        self._endpoint_random = {name: random.Random(f"{self.seed}:{name}") for name in ENDPOINTS}

    def replace(self, config: FaultConfig, seed: int | None = None) -> None:
        """New knobs; a given seed restarts every random stream from it."""
        self.config = config
        if seed is not None:
            self.seed = seed
            self._reseed()

    def restart(self) -> None:
        self._reseed()

    def endpoint_fault(self, endpoint: Endpoint) -> EndpointFault | None:
        """The fault to inject into this call, or None. One draw per call when a rate is set."""
        fault = self.config.endpoints.get(endpoint)
        if fault is None or fault.rate <= 0:
            return None
        return fault if self._endpoint_random[endpoint].random() < fault.rate else None

    def webhook_plan(self) -> WebhookPlan:
        """Whether one webhook is dropped, duplicated and delayed; three draws per webhook, always."""
        rng = self._webhook_random
        config = self.config
        drop = rng.random() < config.webhook_drop_rate
        duplicate = rng.random() < config.webhook_duplicate_rate
        delayed = rng.random() < config.webhook_delay_rate
        return WebhookPlan(
            drop=drop, duplicate=duplicate and not drop, delay_ms=config.webhook_delay_ms if delayed else 0
        )


@dataclass(frozen=True)
class WebhookPlan:
    drop: bool
    duplicate: bool
    delay_ms: int


def error_response(fault: EndpointFault) -> Response:
    """The response an injected fault answers with."""
    if fault.error == "500":
        return JSONResponse(
            {"ok": False, "error": {"code": "INTERNAL_ERROR", "message": "simulated internal error"}},
            status_code=500,
        )
    if fault.error == "503":
        return JSONResponse(
            {"ok": False, "error": {"code": "SERVICE_UNAVAILABLE", "message": "simulated outage"}},
            status_code=503,
        )
    if fault.error == "500-bare":
        return Response("Internal Server Error", status_code=500, media_type="text/plain")
    if fault.error == "502-bare":
        return JSONResponse({"message": "Internal server error"}, status_code=502)
    headers = {"Retry-After": str(fault.retry_after_s)} if fault.error == "429-retry-after" else None
    return JSONResponse({"message": "Too Many Requests"}, status_code=429, headers=headers)
