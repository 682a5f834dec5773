"""The inbox's composition root: settings in, a FastAPI app with its feed, store and producer out.

``uvicorn`` calls ``create_app()`` (``factory=True``). The app reads the topics into the store (``feed``),
serves the pages (``pages``) and the server-sent events that refresh them (``events``), and publishes
answers with the same durable producer as the ingress (acks=all, idempotent, Kafka's partitioner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from offload_bridge.inbox import events, pages
from offload_bridge.inbox.feed import Feed
from offload_bridge.inbox.http import envelope
from offload_bridge.inbox.identity import (
    LOOPBACK,
    CsrfTokens,
    IdentityRefused,
    Person,
    parse_networks,
    person_of,
    trusted,
)
from offload_bridge.inbox.metrics import InboxMetrics
from offload_bridge.inbox.store import FeedItem, InboxStore
from offload_bridge.ingress.publisher import Publisher
from offload_bridge.settings import Settings, get_settings

log = logging.getLogger(__name__)

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/ready"
METRICS_PATH = "/metrics"
OPEN_PATHS = frozenset({LIVENESS_PATH, READINESS_PATH, METRICS_PATH})
STATIC = Path(__file__).parent / "static"
PRUNE_EVERY_S = 600.0

# Only what the inbox serves itself, no inline script or style, no framing, forms only to itself: text a
# counterparty wrote that slipped through escaping still could not run or load anything.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _clock_ms() -> int:
    return int(time.time() * 1000)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    history_ms = int(settings.offload_inbox_history_days * 86_400_000)
    store = InboxStore(history_ms, _clock_ms)
    hub = events.Hub()
    networks = parse_networks(settings.offload_inbox_trusted_proxies)
    # A development machine's stand-in for the proxy (OFFLOAD_INBOX_DEV_PERSON; settings refuse it elsewhere).
    dev_person = (
        Person(settings.offload_inbox_dev_person, None) if settings.offload_inbox_dev_person else None
    )
    secret = settings.offload_inbox_csrf_secret
    csrf = CsrfTokens(
        secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32),
        settings.offload_inbox_form_max_age_s,
    )
    publisher = Publisher(settings, client_id="offload-bridge-inbox")

    def deliver(items: list[FeedItem]) -> None:
        changed = store.apply(items)
        if changed:
            hub.publish(changed)

    # Reads the topics once the lifespan starts it (on the event loop the store lives on).
    feed = Feed(settings, deliver, history_ms)
    metrics = InboxMetrics(store, feed.status)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if secret is None:
            log.warning(
                "OFFLOAD_INBOX_CSRF_SECRET is unset: forms are signed with a key of this process only; "
                "set one shared by every replica"
            )
        feed.start(asyncio.get_running_loop())
        await publisher.start()
        pruning = asyncio.create_task(_prune(store), name="inbox-prune")
        try:
            yield
        finally:
            pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruning
            hub.close()
            await publisher.stop()
            await asyncio.to_thread(feed.stop)

    app = FastAPI(
        title="offload-bridge inbox", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.inbox = pages.InboxContext(settings, store, publisher, csrf, feed.status)
    app.state.hub = hub

    @app.middleware("http")
    async def identity(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response: Response
        if request.url.path in OPEN_PATHS:
            response = await call_next(request)
        else:
            try:
                peer = request.client.host if request.client is not None else None
                request.state.person = person_of(peer, dict(request.headers), networks)
            except IdentityRefused as refused:
                if dev_person is not None and trusted(peer, LOOPBACK):
                    request.state.person = dev_person
                    response = await call_next(request)
                else:
                    metrics.refused.labels("identity").inc()
                    response = envelope(401, "UNAUTHORIZED", refused.message)
            else:
                response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 404:
            return envelope(404, "NOT_FOUND", "no such page")
        if error.status_code == 405:
            return envelope(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")
        return envelope(error.status_code, "HTTP_ERROR", str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return envelope(400, "INVALID_REQUEST", f"{where}: {first.get('msg')}")

    @app.get(LIVENESS_PATH)
    async def liveness() -> Response:
        return Response(b'{"ok":true,"data":{"alive":true}}', media_type="application/json")

    @app.get(READINESS_PATH)
    async def readiness() -> Response:
        if not feed.status.ready:
            why = feed.status.error or "reading the topics"
            return envelope(503, "NOT_READY", f"the inbox is not ready: {why}")
        if not publisher.connected:
            return envelope(503, "NOT_READY", "the inbox cannot publish answers yet: not connected to Kafka")
        return Response(b'{"ok":true,"data":{"ready":true}}', media_type="application/json")

    @app.get(METRICS_PATH)
    async def prometheus() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    app.include_router(pages.router)
    app.include_router(events.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.metrics = metrics
    return app


async def _prune(store: InboxStore) -> None:
    while True:
        await asyncio.sleep(PRUNE_EVERY_S)
        dropped = store.prune()
        if dropped:
            log.info("inbox: forgot the history of %d case(s) older than the window", dropped)
