"""The ingress application factory: settings in, a FastAPI app with its producer's lifecycle out.

``uvicorn`` calls ``create_app()`` in each worker (``factory=True``), reading settings from the environment.
"""

from __future__ import annotations

import gc
import json
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from offload_bridge import __version__
from offload_bridge.ingress.auth import secret_key
from offload_bridge.ingress.http import error_envelope, redact_path
from offload_bridge.ingress.openapi import openapi_document
from offload_bridge.ingress.publisher import Publisher
from offload_bridge.ingress.routes import IngressContext, router
from offload_bridge.settings import Settings, get_settings
from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID, topic_name

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    publisher = Publisher(settings)
    secret = settings.offload_webhook_secret
    context = IngressContext(
        publisher=publisher,
        tokens=settings.webhook_tokens,
        signing_key=secret_key(secret.get_secret_value()) if secret is not None else None,
        max_bytes=settings.offload_webhook_max_bytes,
        events_topic=topic_name(CASE_EVENTS, settings),
        invalid_topic=topic_name(CASE_EVENTS_INVALID, settings),
        retry_after_s=max(1, math.ceil(settings.offload_publish_timeout_s)),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not context.tokens:
            log.warning(
                "OFFLOAD_WEBHOOK_TOKENS is not set: POST /webhooks/offload is open to anyone who can reach it"
            )
        await publisher.start()
        # Everything loaded so far lives as long as the process: keep it out of the collector's full
        # passes, which otherwise stall every in-flight webhook for tens of milliseconds.
        gc.freeze()
        try:
            yield
        finally:
            # Uvicorn has let in-flight requests finish; deliver anything still buffered.
            await publisher.stop()

    app = FastAPI(
        title="offload-bridge ingress",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # A path with a trailing slash is 404 in the envelope, not a bodiless 307 that a webhook sender
        # would not follow (and that would only lead to the token-less path).
        redirect_slashes=False,
    )
    app.state.ingress = context
    # Served by the router (GET /openapi.json); built without settings, so no token or secret is in it.
    app.state.openapi_json = json.dumps(openapi_document(__version__)).encode()
    app.include_router(router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
        # Starlette's own headers kept: a 405 must say which methods the path takes (Allow, RFC 9110).
        return error_envelope(error.status_code, code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, error: RequestValidationError) -> Response:
        return error_envelope(400, "INVALID_REQUEST", "the request is malformed")

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> Response:
        log.exception("unexpected error answering %s %s", request.method, redact_path(request.url.path))
        return error_envelope(500, "INTERNAL_ERROR", "unexpected error; see the ingress log")

    return app
