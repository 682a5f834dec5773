"""The Offload API over one shared HTTP client: what a call answered, or how it failed to.

Responses are reported as they are, envelope or not (API gateways throttle and fail without Offload's
envelope); deciding what an answer means is the callers' business (``streams.answers.policy``). Every call
is admitted by the worker's one ``OffloadLimits`` (calls in flight, calls a second, the pause when Offload
pushes back), whichever feature makes it.

The client is aiohttp's: with 64 calls in flight, a call through httpx cost the worker 0.55-0.65 ms of CPU
(spread over 8 pools of 8 connections; 2.3 ms in one pool of 64, whose every request walks every
connection), a call through aiohttp 0.10-0.12 ms, measured against the simulator on the same machine
(``bench.answers`` says what that makes per answer). httpx stays for clients and transports handed in
(``httpx.ASGITransport`` to the simulator in the in-process tests).
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import httpx
from yarl import URL

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
    return reply_of(response.status_code, response.headers.get("retry-after"), response.content)


def reply_of(status: int, retry_after_header: str | None, content: bytes) -> OffloadReply:
    """What an HTTP answer says: Offload's envelope when it has one, else the start of its text."""
    retry_after = parse_retry_after(retry_after_header)
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("ok"), bool):
        raw_error, raw_data = body.get("error"), body.get("data")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        data = raw_data if isinstance(raw_data, dict) else None
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = str(error.get("message") or "")
        return OffloadReply(status, data, code, message, retry_after, enveloped=True)
    text = content.decode("utf-8", errors="replace")[:200].strip()
    return OffloadReply(status, None, None, text, retry_after, enveloped=False)


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


class _Client(Protocol):
    async def send(self, method: str, path: str, body: bytes | None) -> OffloadReply:
        """The answer to one request; raises OffloadUnreachable."""

    async def aclose(self) -> None: ...


class _AiohttpClient:
    """One aiohttp session, made in the running event loop at the first call, with a connection for
    every call the limits admit at once (so no call waits for one)."""

    def __init__(self, settings: Settings, headers: dict[str, str]) -> None:
        self.base = str(settings.offload_base_url).rstrip("/")
        self.headers = headers
        self.connections = settings.http_pool_connections
        # connect: getting a connection, from the pool or a new one (never sent if it runs out);
        # sock_read: between two reads of the answer, like httpx's read timeout.
        self.timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.offload_http_connect_timeout_s,
            sock_connect=settings.offload_http_connect_timeout_s,
            sock_read=settings.offload_http_timeout_s,
        )
        self._session: aiohttp.ClientSession | None = None

    def _started(self) -> aiohttp.ClientSession:
        if self._session is None:
            # A keep-alive connection idle longer than this is closed on our side, as httpx does after
            # 5 s: well before a server or a load balancer closes it (and a request written onto a
            # connection the server is closing could have reached it or not).
            connector = aiohttp.TCPConnector(limit=self.connections, limit_per_host=0, keepalive_timeout=5)
            self._session = aiohttp.ClientSession(
                headers=self.headers, timeout=self.timeout, connector=connector, auto_decompress=True
            )
        return self._session

    async def send(self, method: str, path: str, body: bytes | None) -> OffloadReply:
        session = self._started()
        # Already quoted (``_segment``): taken as it is.
        url = URL(self.base + path, encoded=True)
        headers = {"content-type": "application/json"} if body is not None else None
        try:
            async with session.request(method, url, data=body, headers=headers) as response:
                content = await response.read()
                return reply_of(response.status, response.headers.get("retry-after"), content)
        # Not connected, or no connection within the connect timeout: the request was never written.
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            raise OffloadUnreachable(f"{method} {path}: {type(error).__name__}", reached=False) from None
        except (TimeoutError, aiohttp.ClientError) as error:
            raise OffloadUnreachable(f"{method} {path}: {type(error).__name__}", reached=True) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _HttpxClient:
    """An httpx client handed in, or one over a transport handed in."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def send(self, method: str, path: str, body: bytes | None) -> OffloadReply:
        headers = {"content-type": "application/json"} if body is not None else None
        try:
            response = await self.http.request(method, path, content=body, headers=headers)
        # A pool timeout, like a failed connection, happens before the request is written: never sent.
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            raise OffloadUnreachable(f"{method} {path}: {type(error).__name__}", reached=False) from None
        except httpx.TransportError as error:
            raise OffloadUnreachable(f"{method} {path}: {type(error).__name__}", reached=True) from None
        return read_reply(response)

    async def aclose(self) -> None:
        await self.http.aclose()


class OffloadApi:
    """Calls to the Offload API with the configured key and timeouts, admitted by ``limits``; a feature's
    view (``bounded``) also keeps to the feature's own number of calls in flight."""

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
        self._feature_calls: asyncio.Semaphore | None = None
        self.in_flight = 0  # calls of this view under way (waiting for the limits, or sent)
        headers = {"accept": "application/json", "user-agent": "offload-bridge"}
        if settings.offload_api_key is not None:
            headers["x-api-key"] = settings.offload_api_key.get_secret_value()
        self._client: _Client
        if http is None and transport is None:
            self._client = _AiohttpClient(settings, headers)
            return
        self._client = _HttpxClient(
            http
            or httpx.AsyncClient(
                base_url=str(settings.offload_base_url).rstrip("/"),
                headers=headers,
                timeout=httpx.Timeout(
                    settings.offload_http_timeout_s, connect=settings.offload_http_connect_timeout_s
                ),
                limits=httpx.Limits(max_connections=settings.http_pool_connections),
                transport=transport,
            )
        )

    def bounded(self, in_flight: int) -> OffloadApi:
        """A view sharing this client and its limits that makes at most ``in_flight`` calls at once (the
        answers', the case requests'). Close the client through the original."""
        view = copy.copy(self)
        view._feature_calls = asyncio.Semaphore(in_flight)
        view.in_flight = 0
        return view

    async def aclose(self) -> None:
        await self._client.aclose()

    async def submit_input(self, case_id: str, input_request_id: str, provided_context: str) -> OffloadReply:
        body = {"inputRequestId": input_request_id, "providedContext": provided_context}
        return await self._call("POST", f"/cases/{_segment(case_id)}/input", payload=body)

    async def get_case(self, case_id: str, *, include_transcript: bool = False) -> OffloadReply:
        """``include_transcript``: Offload fills ``conversationThread`` with the conversation so far (a
        call it may fail with a bare 500 where the plain one would have answered)."""
        query = "?includeTranscript=true" if include_transcript else ""
        return await self._call("GET", f"/cases/{_segment(case_id)}{query}")

    async def create_case(self, body: dict[str, Any]) -> OffloadReply:
        return await self._call("POST", "/cases", payload=body)

    async def _call(self, method: str, path: str, payload: Any = None) -> OffloadReply:
        body = _json_bytes(payload) if payload is not None else None
        if self._feature_calls is None:
            return await self._admitted(method, path, body)
        async with self._feature_calls:
            self.in_flight += 1
            try:
                return await self._admitted(method, path, body)
            finally:
                self.in_flight -= 1

    async def _admitted(self, method: str, path: str, body: bytes | None) -> OffloadReply:
        admission = await self.limits.acquire()
        pushed_back = False
        try:
            reply = await self._client.send(method, path, body)
            pushed_back = is_pushback(reply.status, reply.error_code)
            return reply
        except OffloadUnreachable:
            pushed_back = True
            raise
        finally:
            self.limits.release(admission, pushed_back)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _segment(value: str) -> str:
    """A path segment: ids come from messages, so nothing in them may change the path."""
    return quote(value, safe="")
