"""Read the worker's query API (``GET /cases/{id}``, ``GET /cases/{id}/context``, ``GET /cases``,
``GET /workers``) from a client.

The standard library's ``urllib`` on purpose: the client install (pydantic, pydantic-settings,
kafka-python) has no HTTP library, and these are a few small GETs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TypeVar

from pydantic import ValidationError

from offload_bridge.schemas.case_state import CaseState
from offload_bridge.schemas.offload_case import CaseContext
from offload_bridge.schemas.questions import CasePage, WorkerGroup

DEFAULT_TIMEOUT_S = 10.0
ModelT = TypeVar("ModelT", CaseState, CaseContext, CasePage, WorkerGroup)


def bearer_headers(token: str | None) -> dict[str, str]:
    """The ``Authorization`` header of a call to a worker's API; none without a token."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class WorkerUnavailable(RuntimeError):
    """The worker did not answer, or not with its API's envelope; the message says which and why."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"the worker at {url} {reason}")


class WorkerRefused(WorkerUnavailable):
    """The worker answered with an error envelope (``{"ok": false, "error": {"code", "message"}}``)."""

    def __init__(self, url: str, http_status: int, code: str, message: str) -> None:
        self.http_status = http_status
        self.code = code
        self.message = message
        super().__init__(url, f"answered {http_status} {code}: {message}")


class WorkerClient:
    """One worker's query API. Every call raises WorkerUnavailable (or WorkerRefused) when it fails."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S, token: str | None = None) -> None:
        """``token``: the bearer token the worker asks for (``Settings.worker_client_token``, the first of
        OFFLOAD_WORKER_API_TOKENS); None sends none, for a worker whose API is open."""
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Accept": "application/json", **bearer_headers(token)}

    def case(self, case_id: str) -> CaseState | None:
        """The case's state, wherever it lives (the worker routes the GET); None when no worker knows it."""
        try:
            data = self._get(f"/cases/{urllib.parse.quote(case_id, safe='')}")
        except WorkerRefused as refused:
            if refused.code == "CASE_NOT_FOUND":
                return None
            raise
        return self._parse(CaseState, data)

    def context(self, case_id: str) -> CaseContext | None:
        """The case as Offload returns it, with the conversation so far (any worker fetches it, and keeps
        it for OFFLOAD_CASE_CONTEXT_CACHE_S: ``fetchedAt`` says when it was fetched); None when Offload
        knows no such case. Offload unavailable: WorkerRefused with code ``OFFLOAD_UNAVAILABLE`` (try
        again shortly) or ``OFFLOAD_ERROR`` (it will not help)."""
        try:
            data = self._get(f"/cases/{urllib.parse.quote(case_id, safe='')}/context")
        except WorkerRefused as refused:
            if refused.code == "CASE_NOT_FOUND":
                return None
            raise
        return self._parse(CaseContext, data)

    def page(self, *, status: str | None = None, cursor: str | None = None, limit: int = 500) -> CasePage:
        """One page of the cases of this worker's own partitions."""
        params = {"limit": str(limit)}
        if status is not None:
            params["status"] = status
        if cursor is not None:
            params["cursor"] = cursor
        return self._parse(CasePage, self._get("/cases?" + urllib.parse.urlencode(params)))

    def group(self) -> WorkerGroup:
        """Every worker of the group and the partitions it owns."""
        return self._parse(WorkerGroup, self._get("/workers"))

    def _parse(self, model: type[ModelT], data: Any) -> ModelT:
        try:
            return model.model_validate(data)
        except ValidationError as error:
            raise WorkerUnavailable(self.url, f"answered an unexpected {model.__name__}: {error}") from None

    def _get(self, path: str) -> Any:
        """The ``data`` of a GET's envelope."""
        request = urllib.request.Request(self.url + path, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise WorkerUnavailable(self.url, f"did not answer ({reason})") from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise WorkerUnavailable(self.url, f"answered HTTP {status} without JSON") from None
        if not isinstance(body, dict):
            raise WorkerUnavailable(self.url, f"answered HTTP {status} with JSON that is not an envelope")
        if status == 200 and body.get("ok") is True:
            return body.get("data")
        envelope_error = body.get("error")
        problem: dict[str, Any] = envelope_error if isinstance(envelope_error, dict) else {}
        code = str(problem.get("code") or f"HTTP_{status}")
        raise WorkerRefused(self.url, status, code, str(problem.get("message") or "unexpected answer"))
