"""The simulator's FastAPI application: its state, the envelope for every error, the routes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from offload_bridge.simulator.engine import Engine
from offload_bridge.simulator.faults import Endpoint, Faults
from offload_bridge.simulator.models import error
from offload_bridge.simulator.settings import SimulatorSettings
from offload_bridge.simulator.store import CaseStore
from offload_bridge.simulator.webhooks import WebhookSender

_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 400: "INVALID_REQUEST"}


class Simulator:
    """Everything one simulator process holds."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.store = CaseStore()
        self.initial_faults = settings.fault_config()
        self.initial_seed = settings.effective_seed()
        self.faults = Faults(self.initial_faults, self.initial_seed)
        self.sender = WebhookSender(self.faults, settings.signing_key, settings.webhook_timeout_s)
        self.engine = Engine(self.sender)
        # Calls of each API endpoint under way (latency included): lets a test see that a call has reached
        # Offload and not yet been answered, instead of guessing how long the caller takes to send it.
        self.in_flight: Counter[Endpoint] = Counter()

    def reset(self) -> None:
        """Forget every case, stop every pending step and webhook, restore the startup faults and seed."""
        self.engine.cancel_all()
        self.sender.cancel_all()
        self.store.clear()
        self.faults.replace(self.initial_faults, self.initial_seed)

    async def close(self) -> None:
        await self.engine.close()
        await self.sender.close()


def create_app(settings: SimulatorSettings | None = None) -> FastAPI:
    from offload_bridge.simulator.api import router as api_router
    from offload_bridge.simulator.control import router as control_router

    settings = settings or SimulatorSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built inside the event loop: the webhook client and the engine's tasks belong to it.
        app.state.sim = Simulator(settings)
        try:
            yield
        finally:
            await app.state.sim.close()

    app = FastAPI(title="Offload API simulator", lifespan=lifespan, docs_url="/_sim/docs", redoc_url=None,
                  openapi_url="/_sim/openapi.json")  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "INTERNAL_ERROR" if exc.status_code >= 500 else "INVALID_REQUEST")
        return error(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, "INVALID_REQUEST", _validation_message(exc.errors()))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        return error(500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")

    app.include_router(api_router)
    app.include_router(control_router)
    return app


def _validation_message(errors: Any) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
