"""HTTP details of webhook intake: Offload's response envelope, the content type, and a bounded body read."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from offload_bridge.ingress.metrics import Outcome


class Refusal(Exception):
    """A request answered with an error envelope; ``outcome`` names it in the metrics."""

    def __init__(self, status: int, code: str, message: str, outcome: Outcome) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.outcome = outcome


def envelope(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"ok": True, "data": data}, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


class _JSONBody(Response):
    media_type = "application/json"


def published_envelope(event_id: str, partition: int, offset: int) -> Response:
    """The 200 answer to a published webhook: ``envelope(200, {...})`` spelled out, as it is on every
    request's path."""
    body = b'{"ok":true,"data":{"eventId":%s,"partition":%d,"offset":%d}}' % (
        json.dumps(event_id).encode(),
        partition,
        offset,
    )
    return _JSONBody(body)


def error_envelope(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(
        {"ok": False, "error": {"code": code, "message": message}}, separators=(",", ":")
    ).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type, with any parameters (``; charset=utf-8``)."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def redact_path(path: str) -> str:
    """The path without its secret token, for logs."""
    prefix = "/webhooks/offload/"
    return prefix + "***" if path.startswith(prefix) else path


def too_large(limit: int) -> Refusal:
    return Refusal(413, "PAYLOAD_TOO_LARGE", f"the body exceeds {limit} bytes", "too_large")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit``: from Content-Length before reading,
    or while streaming (chunked bodies, or a Content-Length that lies)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        declared = declared.strip()
        # isdigit() alone also takes non-ASCII digits such as "²", which int() refuses.
        if not (declared.isascii() and declared.isdigit()):
            raise Refusal(400, "INVALID_REQUEST", "Content-Length is not a number", "bad_request")
        # The length test first: int() refuses more than 4300 digits.
        significant = declared.lstrip("0") or "0"
        if len(significant) > len(str(limit)) or int(significant) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody reads this answer; it keeps a dropped connection out of the unexpected-error log.
        raise Refusal(
            400, "INVALID_REQUEST", "the client disconnected before the body was complete", "bad_request"
        ) from None
    return b"".join(chunks)
