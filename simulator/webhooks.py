"""Webhook delivery as Offload does it: one POST of ``application/json``, one attempt, no retry.

Faults decide per webhook whether it is dropped, sent twice, or held back (which lets later webhooks
overtake it). With ``SIMULATOR_WEBHOOK_SECRET`` set, each delivery is signed the Standard Webhooks way
(Offload's own webhooks are unsigned; the option exists to exercise the ingress's signature check).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from offload_bridge.simulator.faults import Faults
from offload_bridge.simulator.store import Case, now_ms


def sign(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


# Deliveries in flight at once. The rest wait their turn here, outside httpx, without a deadline.
MAX_CONCURRENT_DELIVERIES = 100


class WebhookSender:
    def __init__(self, faults: Faults, signing_key: bytes | None, timeout_s: float) -> None:
        self.faults = faults
        self.signing_key = signing_key
        # The timeout covers one delivery's connect, write and read, never the time a webhook waits behind
        # others of this simulator: a burst must not turn into failed deliveries the receiver never caused.
        # A webhook waiting in httpx's own pool would count against the timeout, and the pool re-scans every
        # waiting request whenever a connection frees up (hundreds of queued webhooks took a minute), so the
        # queue is a FIFO semaphore sized to the pool: httpx never has a request waiting.
        # Each delivery opens its own connection (no keep-alive): a pooled connection can be closed by the
        # receiver's idle timeout just as a webhook is written onto it (uvicorn's and httpx's are both 5 s),
        # and that webhook would be lost to a race of ours, not to the receiver.
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=MAX_CONCURRENT_DELIVERIES, max_keepalive_connections=0),
        )
        self.gate = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)
        self.tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        self.cancel_all()
        await self.client.aclose()

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()

    def send(self, case: Case, event: dict[str, Any]) -> None:
        """Decide the fate of the event now, in event order (a seed reproduces it); deliver later."""
        record: dict[str, Any] = {
            "event_id": event["event_id"],
            "event_type": event["event_type"],
            "timestamp": event["timestamp"],
            "url": case.request.clientWebhookUrl,
            "deliveries": [],
        }
        case.webhooks.append(record)
        plan = self.faults.webhook_plan()
        record.update(dropped=plan.drop, duplicated=plan.duplicate, delayMs=plan.delay_ms)
        if case.request.clientWebhookUrl is None or plan.drop:
            return
        body = json.dumps(event, separators=(",", ":")).encode()
        copies = 2 if plan.duplicate else 1
        task = asyncio.create_task(
            self._deliver(
                case.request.clientWebhookUrl, event["event_id"], body, copies, plan.delay_ms, record
            )
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(
        self, url: str, event_id: str, body: bytes, copies: int, delay_ms: int, record: dict[str, Any]
    ) -> None:
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        for _ in range(copies):
            headers = {"content-type": "application/json"}
            if self.signing_key is not None:
                timestamp_s = int(time.time())
                headers.update(
                    {
                        "webhook-id": event_id,
                        "webhook-timestamp": str(timestamp_s),
                        "webhook-signature": sign(self.signing_key, event_id, timestamp_s, body),
                    }
                )
            async with self.gate:
                await self._post(url, body, headers, record)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], record: dict[str, Any]) -> None:
        delivery: dict[str, Any] = {"at": now_ms()}
        try:
            response = await self.client.post(url, content=body, headers=headers)
            delivery.update(httpStatus=response.status_code, ok=response.is_success)
        except httpx.HTTPError as error:
            # One attempt only: a failed delivery is recorded and never retried.
            delivery.update(httpStatus=None, ok=False, error=f"{type(error).__name__}: {error}")
        record["deliveries"].append(delivery)
