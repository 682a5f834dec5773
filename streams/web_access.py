"""Who may use the worker's web server, and what it serves: only our views, behind a bearer token.

The worker's routes return case state (what Offload collected for the client, its questions and answers)
and internals (counters, metrics, which worker owns which partition). One aiohttp middleware on Faust's
web application guards them all, so a view added later is guarded without doing anything:

- with ``OFFLOAD_WORKER_API_TOKENS`` set, every request but liveness (``/healthz``) and readiness
  (``/ready``) needs ``Authorization: Bearer <token>``, compared in constant time with each accepted
  token; otherwise 401 ``UNAUTHORIZED`` in Offload's envelope with ``WWW-Authenticate: Bearer``. The
  token is never logged or echoed. ``/metrics`` is guarded too unless ``OFFLOAD_WORKER_METRICS_AUTH``
  is false;
- an unknown path or method answers 404 / 405 in the same envelope (after the token check, so a caller
  without one learns nothing about which paths exist).

Faust's built-in views (``/``, ``/router/``, ``/table/...``, ``/graph/``, ``/stats/``) are not mounted:
they list the tables' contents and the cluster's topology, and one of them answers 500 for our records.
Routing ``GET /cases/{id}`` to the owning worker does not need them: Faust's router forwards the request
itself, with the caller's headers, so the owner checks the caller's own credential.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from faust.web.base import BlueprintManager

from offload_bridge.settings import Settings

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/ready"
METRICS_PATH = "/metrics"
REALM = "offload-bridge worker"


def envelope(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"ok": False, "error": {"code": code, "message": message}}, separators=(",", ":"))
    return web.Response(body=body.encode(), status=status, content_type="application/json", headers=headers)


def open_paths(settings: Settings) -> frozenset[str]:
    """Paths served without a token: they say nothing about cases or the cluster."""
    paths = {LIVENESS_PATH, READINESS_PATH}
    if not settings.offload_worker_metrics_auth:
        paths.add(METRICS_PATH)
    return frozenset(paths)


def token_matches(given: str, tokens: Collection[str]) -> bool:
    """Constant time in the given token: every accepted token is compared, whichever matched."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given_bytes, token.encode())
    return matched


def _unauthorized(message: str, error: str | None) -> web.Response:
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return envelope(401, "UNAUTHORIZED", message, {"WWW-Authenticate": challenge})


def check_bearer(request: web.Request, tokens: Collection[str]) -> web.Response | None:
    """None when the request carries an accepted token; else the 401 to answer."""
    header = request.headers.get("Authorization")
    if header is None:
        return _unauthorized("this route needs Authorization: Bearer <token>", None)
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return _unauthorized("expected Authorization: Bearer <token>", "invalid_request")
    if not token_matches(credential.strip(), tokens):
        # Never echo the credential: a near-miss of a real token is still a secret.
        return _unauthorized("the bearer token is not accepted by this worker", "invalid_token")
    return None


def access_middleware(settings: Settings) -> Middleware:
    """The one gate in front of every route of the worker's web application."""
    tokens = settings.worker_api_tokens
    unguarded = open_paths(settings)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if tokens and request.path not in unguarded:
            refused = check_bearer(request, tokens)
            if refused is not None:
                return refused
        try:
            response = await handler(request)
        except web.HTTPMethodNotAllowed as error:
            allow = ", ".join(sorted(error.allowed_methods))
            message = f"{request.method} is not allowed here"
            return envelope(405, "METHOD_NOT_ALLOWED", message, {"Allow": allow})
        except web.HTTPNotFound:
            return envelope(404, "NOT_FOUND", "no such route")
        if response.status == 401 and "WWW-Authenticate" not in response.headers:
            # A 401 relayed from the owning worker (Faust's router keeps only status and body).
            response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
        return response

    return guard


def serve_only_our_views(app: object) -> None:
    """Mount none of Faust's built-in blueprints: the worker serves the views its features register.

    Faust applies ``app.web.blueprints`` when the web server starts (``Web.init_server``); an empty
    manager leaves only the routes added with ``app.page``. Its ``web_*_enabled`` settings cannot do
    this alone: with the statistics off, Faust mounts its production index at ``/`` in their place.
    """
    app.web.blueprints = BlueprintManager()  # type: ignore[attr-defined]


def open_api_warning(settings: Settings) -> str | None:
    """The warning a worker logs at start when its API needs no token; None when it does."""
    if settings.worker_api_tokens:
        return None
    where = f"{settings.offload_worker_web_host}:{settings.offload_worker_web_port}"
    return (
        f"OFFLOAD_WORKER_API_TOKENS is unset: the worker's query API on {where} is open, and anyone who "
        "can reach it reads every case (GET /cases), its counters and metrics; set tokens before "
        "binding to anything but 127.0.0.1"
    )
