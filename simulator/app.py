"""The simulator's FastAPI application: its state (``state.py``), the envelope for every error, the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from offload_bridge import __version__
from offload_bridge.simulator.api import router as api_router
from offload_bridge.simulator.control import router as control_router
from offload_bridge.simulator.models import error
from offload_bridge.simulator.openapi import openapi_document
from offload_bridge.simulator.settings import SimulatorSettings
from offload_bridge.simulator.state import Simulator

_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 400: "INVALID_REQUEST"}


def create_app(settings: SimulatorSettings | None = None) -> FastAPI:
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
    document = openapi_document(__version__)
    app.openapi = lambda: document  # type: ignore[method-assign]
    return app


def _validation_message(errors: Any) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
