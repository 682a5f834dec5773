"""The Offload API over one shared httpx.AsyncClient: what a call answered, or how it failed to.

Responses are reported as they are, envelope or not (API gateways throttle and fail without Offload's
envelope); deciding what an answer means is the callers' business (``streams.answers.policy``). Every call
is admitted by the worker's one ``OffloadLimits`` (calls in flight, calls a second, the pause when Offload
pushes back), whichever feature makes it.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from offload_bridge.settings import Settings
from offload_bridge.streams.offload_limits import OffloadLimits, is_pushback


@dataclass(frozen=True)
class OffloadReply:
    """An HTTP answer from Offload (or from whatever stands in front of it)."""

    status: int
    data: dict[str, Any] | None
    error_code: str | None
    error_message: str
    retry_after_s: float | None
    enveloped: bool

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class OffloadUnreachable(Exception):
    """No HTTP answer: a timeout or a connection failure.

    ``reached`` is False only when the request provably never got to Offload (the connection was never
    established), so a non-idempotent call may be repeated safely.
    """

    def __init__(self, message: str, reached: bool) -> None:
        super().__init__(message)
        self.reached = reached


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def read_reply(response: httpx.Response) -> OffloadReply:
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("ok"), bool):
        raw_error, raw_data = body.get("error"), body.get("data")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        data = raw_data if isinstance(raw_data, dict) else None
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = str(error.get("message") or "")
        return OffloadReply(response.status_code, data, code, message, retry_after, enveloped=True)
    text = response.text[:200].strip()
    return OffloadReply(response.status_code, None, None, text, retry_after, enveloped=False)


def missing_key_warning(settings: Settings) -> str | None:
    """What the worker warns about at start when it would call Offload without a key, else None.

    Without ``OFFLOAD_API_KEY`` calls carry no ``x-api-key``: Offload, and a simulator started on its own
    (whose key is ``dev-key``), answer 401, so every answer ends dead-lettered and every case request fails.
    ``offload-bridge run`` sets the key for the simulator it starts.
    """
    if settings.offload_api_key is not None:
        return None
    return (
        f"OFFLOAD_API_KEY is not set: calls to Offload at {settings.offload_base_url} carry no x-api-key and "
        "will be refused with 401 (answers dead-lettered, case requests failed); for a simulator started "
        "with `offload-bridge simulator`, set OFFLOAD_API_KEY=dev-key"
    )


class OffloadApi:
    """Calls to the Offload API with the configured key and timeouts, admitted by ``limits``."""

    def __init__(
        self,
        settings: Settings,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: OffloadLimits | None = None,
    ) -> None:
        """``http`` replaces the client outright; ``transport`` keeps the configured client (key, base
        URL, timeouts) over another transport, e.g. ``httpx.ASGITransport`` to the simulator in tests.
        ``limits``: the worker's admission of calls (default: one from the settings)."""
        self.limits = limits or OffloadLimits.from_settings(settings)
        headers = {"accept": "application/json", "user-agent": "offload-bridge"}
        if settings.offload_api_key is not None:
            headers["x-api-key"] = settings.offload_api_key.get_secret_value()
        self._http = http or httpx.AsyncClient(
            base_url=str(settings.offload_base_url).rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(
                settings.offload_http_timeout_s, connect=settings.offload_http_connect_timeout_s
            ),
            limits=httpx.Limits(max_connections=settings.http_pool_connections),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def submit_input(self, case_id: str, input_request_id: str, provided_context: str) -> OffloadReply:
        body = {"inputRequestId": input_request_id, "providedContext": provided_context}
        return await self._call("POST", f"/cases/{_segment(case_id)}/input", json=body)

    async def get_case(self, case_id: str) -> OffloadReply:
        return await self._call("GET", f"/cases/{_segment(case_id)}")

    async def create_case(self, body: dict[str, Any]) -> OffloadReply:
        return await self._call("POST", "/cases", json=body)

    async def _call(self, method: str, path: str, json: Any = None) -> OffloadReply:
        admission = await self.limits.acquire()
        pushed_back = False
        try:
            response = await self._http.request(method, path, json=json)
            reply = read_reply(response)
            pushed_back = is_pushback(reply.status, reply.error_code)
            return reply
        # A pool timeout, like a failed connection, happens before the request is written: never sent.
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            pushed_back = True
            raise OffloadUnreachable(f"{method} {path}: {type(error).__name__}", reached=False) from None
        except httpx.TransportError as error:
            pushed_back = True
            raise OffloadUnreachable(f"{method} {path}: {type(error).__name__}", reached=True) from None
        finally:
            self.limits.release(admission, pushed_back)


def _segment(value: str) -> str:
    """A path segment: ids come from messages, so nothing in them may change the path."""
    return quote(value, safe="")
