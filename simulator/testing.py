"""Helpers for tests that need Offload: the simulator as a real process, and a real webhook receiver.

with WebhookReceiver() as receiver, simulator_process("--step-ms", "50") as sim:
    case_id = sim.create_case(receiver.url, scenario="input_then_complete")
    event = receiver.wait_for_event(case_id, "case.input_needed")
    sim.answer(case_id, event["data"]["inputRequestId"], "Yes.")
    receiver.wait_for_event(case_id, "case.completed")
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from offload_bridge.testing import ServiceProcess, free_port

DEFAULT_API_KEY = "dev-key"

# The quickstart's example case, with the simulator's knobs added by case_body().
EXAMPLE_CASE: dict[str, Any] = {
    "clientReferenceId": "vendor_2048",
    "channel": "EMAIL",
    "maxAttempts": 3,
    "followUpDelayHours": 72,
    "goal": {
        "objective": "Collect a signed W-9 from the vendor",
        "knowledge": {
            "vendorName": "Northstar Supplies",
            "requestReason": "AP onboarding",
            "dueDate": "2026-04-04",
        },
    },
    "counterparty": {
        "address": "ap@northstar.example",
        "name": "Maya Chen",
        "company": "Northstar Supplies",
        "timezone": "America/Los_Angeles",
    },
    "senderPersona": {
        "name": "Avery",
        "role": "Accounts Payable",
        "company": "Offload Customer Inc.",
        "tone": "friendly, concise",
    },
    "constraints": ["Email only", "Do not mention legal action"],
    "resultSchema": {
        "type": "object",
        "properties": {
            "signedW9Received": {"type": "boolean"},
            "taxId": {"type": "string"},
            "documentUrl": {"type": "string"},
        },
        "required": ["signedW9Received"],
    },
}


def case_body(
    webhook_url: str | None = None,
    scenario: str | None = None,
    step_ms: int | None = None,
    metadata: dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A valid POST /cases body (the quickstart's example) with the simulator's metadata knobs."""
    body = copy.deepcopy(EXAMPLE_CASE)
    meta = dict(metadata or {})
    if scenario is not None:
        meta["simScenario"] = scenario
    if step_ms is not None:
        meta["simStepMs"] = step_ms
    if meta:
        body["metadata"] = meta
    if webhook_url is not None:
        body["clientWebhookUrl"] = webhook_url
    body.update(overrides)
    return body


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes
    received_at_ms: int  # wall clock, comparable with event timestamps

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers ``status`` (default 200).

    It is uvicorn, run on its own event loop in a background thread: the same server the ingress runs, so
    it accepts connections the way a real webhook endpoint does. The stdlib ``ThreadingHTTPServer`` it
    replaces listened with a backlog of 5; a burst of concurrent deliveries overflowed that queue, the kernel
    fell back to SYN cookies, and connections whose cookie it then refused were reset after the sender had
    written its request. The simulator counts those as failed deliveries (it never retries), so tests lost
    webhooks the simulator had sent correctly.
    """

    # Far above any client's idle expiry (httpx closes idle connections after 5 s): the client, not the
    # server, always ends an idle keep-alive connection, so no request is written onto a connection the
    # server is closing at that instant.
    KEEP_ALIVE_S = 75
    BACKLOG = 2048

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self._requests: list[ReceivedRequest] = []
        self._changed = threading.Condition()
        # Bound now, so that ``url`` is known before ``start()``; uvicorn calls listen() with BACKLOG.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            self._app,
            interface="asgi3",  # a bound method is not recognised as ASGI 3 by uvicorn's guess
            lifespan="off",
            proxy_headers=False,
            log_config=None,
            log_level="warning",
            access_log=False,
            backlog=self.BACKLOG,
            timeout_keep_alive=self.KEEP_ALIVE_S,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="webhook-receiver", daemon=True
        )

    async def _app(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:  # fmt: skip
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status = self.status
        if scope["method"] == "POST":
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope["path"] + (f"?{query}" if query else "")
            headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
            request = ReceivedRequest(path, headers, b"".join(chunks), time.time_ns() // 1_000_000)
            with self._changed:
                self._requests.append(request)
                self._changed.notify_all()
        else:
            status = 405
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host!s}:{port}/webhooks"

    def start(self, timeout_s: float = 30.0) -> WebhookReceiver:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the webhook receiver stopped while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the webhook receiver did not start within {timeout_s}s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._socket.close()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._changed:
            return list(self._requests)

    def events(self, case_id: str | None = None) -> list[dict[str, Any]]:
        """Every received body, decoded, in arrival order (optionally only one case's)."""
        events = [request.json() for request in self.requests]
        return [e for e in events if case_id is None or e.get("data", {}).get("caseId") == case_id]

    def clear(self) -> None:
        with self._changed:
            self._requests.clear()

    def wait_until(
        self, done: Callable[[list[ReceivedRequest]], bool], timeout_s: float = 30.0
    ) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not done(self._requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"webhooks not as expected within {timeout_s}s: {len(self._requests)} got"
                    )
                self._changed.wait(left)
            return list(self._requests)

    def wait_for_event(
        self, case_id: str, event_type: str, timeout_s: float = 30.0, nth: int = 1
    ) -> dict[str, Any]:
        """The ``nth`` webhook of this type for this case, waiting for it to arrive."""

        def matching(requests: list[ReceivedRequest]) -> list[dict[str, Any]]:
            events = (request.json() for request in requests)
            return [
                e for e in events if e.get("event_type") == event_type and e["data"].get("caseId") == case_id
            ]

        found = matching(self.wait_until(lambda requests: len(matching(requests)) >= nth, timeout_s))
        return found[nth - 1]


def planned_deliveries(webhook: dict[str, Any]) -> int:
    """How many times the simulator decided to send one webhook of a truth (faults applied)."""
    if webhook["dropped"] or webhook["url"] is None:
        return 0
    return 2 if webhook["duplicated"] else 1


def deliveries_done(truth: dict[str, Any]) -> bool:
    """Every webhook of a case's truth has the outcome of each delivery it was to get.

    The simulator records an outcome once the receiver answered, so from then on a WebhookReceiver holds
    every webhook of the case it will ever get.
    """
    return all(len(webhook["deliveries"]) == planned_deliveries(webhook) for webhook in truth["webhooks"])


class RunningSimulator:
    """A simulator process and a small client for it."""

    def __init__(self, process: ServiceProcess, base_url: str, api_key: str = DEFAULT_API_KEY) -> None:
        self.process = process
        self.base_url = base_url
        self.api_key = api_key
        self.http = httpx.Client(base_url=base_url, timeout=30.0)

    def headers(self, api_key: str | None = None) -> dict[str, str]:
        return {"x-api-key": api_key or self.api_key}

    def create_case(self, webhook_url: str | None = None, scenario: str | None = None, **kwargs: Any) -> str:
        response = self.http.post(
            "/cases", json=case_body(webhook_url, scenario, **kwargs), headers=self.headers()
        )
        response.raise_for_status()
        case_id: str = response.json()["data"]["caseId"]
        return case_id

    def get_case(self, case_id: str) -> dict[str, Any]:
        response = self.http.get(f"/cases/{case_id}", headers=self.headers())
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def answer(self, case_id: str, input_request_id: str, provided_context: str) -> httpx.Response:
        body = {"inputRequestId": input_request_id, "providedContext": provided_context}
        return self.http.post(f"/cases/{case_id}/input", json=body, headers=self.headers())

    def truth(self, case_id: str) -> dict[str, Any]:
        response = self.http.get(f"/_sim/cases/{case_id}")
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def wait_for_truth(
        self, case_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Poll the truth of a case until ``done`` holds."""
        deadline = time.monotonic() + timeout_s
        while True:
            truth = self.truth(case_id)
            if done(truth):
                return truth
            if time.monotonic() > deadline:
                raise TimeoutError(f"case {case_id} did not get there within {timeout_s}s: {truth['status']}")
            time.sleep(0.05)

    def wait_in_flight(self, endpoint: str, count: int = 1, timeout_s: float = 30.0) -> None:
        """Wait until ``count`` calls of ``endpoint`` (e.g. ``create_case``) have reached the simulator and
        are not answered yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            in_flight = self.http.get("/_sim/health").json()["data"]["inFlight"]
            if in_flight.get(endpoint, 0) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} {endpoint} calls not under way within {timeout_s}s: {in_flight}")
            time.sleep(0.05)

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        response = self.http.put("/_sim/faults", json=changes)
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def reset(self) -> None:
        self.http.post("/_sim/reset").raise_for_status()

    def close(self) -> None:
        self.http.close()


@contextlib.contextmanager
def simulator_process(
    *args: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    timeout_s: float = 60.0,
) -> Iterator[RunningSimulator]:
    """Run ``offload-bridge simulator --port PORT *args`` as a real process; stopped on exit."""
    port = port or free_port()
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="simulator-"))
            log_path = Path(log_dir) / "simulator.log"
        process = ServiceProcess(["simulator", "--port", str(port), *args], env=env, log_path=log_path)
        process.start()
        stack.callback(process.stop)
        base_url = f"http://127.0.0.1:{port}"
        process.wait_http(f"{base_url}/_sim/health", timeout_s=timeout_s)
        running = RunningSimulator(process, base_url)
        stack.callback(running.close)
        yield running


def signature_ok(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Check a Standard Webhooks signature independently of the simulator's own signing code."""
    import base64
    import hashlib
    import hmac

    encoded = secret.removeprefix("whsec_").rstrip("=")
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(part == f"v1,{expected}" for part in headers.get("webhook-signature", "").split(" "))


__all__: Sequence[str] = (
    "DEFAULT_API_KEY",
    "EXAMPLE_CASE",
    "ReceivedRequest",
    "RunningSimulator",
    "WebhookReceiver",
    "case_body",
    "deliveries_done",
    "planned_deliveries",
    "signature_ok",
    "simulator_process",
)
