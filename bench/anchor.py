"""The benchmark's anchor: a FastAPI no-op webhook endpoint that validates the same pydantic model as the
ingress and publishes nothing. Served by uvicorn with the ingress' own options."""

from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from offload_bridge.schemas.events import parse_event_object


def create_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/webhooks/offload/{token}")
    async def webhook(token: str, request: Request) -> Response:
        event = parse_event_object(json.loads(await request.body()))
        body = json.dumps({"ok": True, "data": {"eventId": event.event_id}}, separators=(",", ":"))
        return Response(body.encode(), media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return app
