"""The one Kafka producer of an ingress worker: durable sends (acks=all, idempotent) with a deadline.

The producer connects in the background and keeps trying, so a worker started while the broker is down
becomes ready when it comes up. Once connected, aiokafka reconnects by itself after a broker outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from offload_bridge.clients import aiokafka_options
from offload_bridge.settings import Settings

log = logging.getLogger(__name__)

# Room for the record's headers and batch framing on top of the largest body we accept.
_RECORD_OVERHEAD_BYTES = 64 * 1024
_CONNECT_RETRY_S = 1.0
_READY_PROBE_TIMEOUT_S = 2.0


class PublishFailed(RuntimeError):
    """The broker did not acknowledge in time or refused the record; the message says why."""


@dataclass(frozen=True)
class Published:
    partition: int
    offset: int


def producer_options(settings: Settings) -> dict[str, object]:
    """aiokafka options: connection, plus the durability the contract asks for."""
    return {
        **aiokafka_options(settings),
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": "offload-bridge-ingress",
        # aiokafka's defaults are acks=1 without idempotence: a leader failover could lose or repeat events.
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": settings.offload_webhook_max_bytes + _RECORD_OVERHEAD_BYTES,
        # A record nobody waits for any more is still worth delivering late: Offload never resends it.
        "request_timeout_ms": max(int(settings.offload_publish_timeout_s * 1000) * 6, 30_000),
        "linger_ms": 0,
    }


def _observe(delivery: asyncio.Future[object]) -> None:
    """Retrieve a late delivery's failure so it is logged once, not as an unretrieved exception."""
    if not delivery.cancelled() and delivery.exception() is not None:
        log.warning("a record was not delivered: %s", delivery.exception())


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout_s = settings.offload_publish_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        self._connecting = asyncio.create_task(self._connect_until_done(), name="kafka-connect")

    async def _connect_until_done(self) -> None:
        attempt = 0
        while not self._closed:
            producer = AIOKafkaProducer(**producer_options(self._settings))
            try:
                await producer.start()
            except (KafkaError, OSError) as error:
                attempt += 1
                if attempt == 1 or attempt % 30 == 0:
                    log.warning(
                        "Kafka at %s not reachable yet (%s); retrying",
                        self._settings.bootstrap_servers, type(error).__name__,
                    )  # fmt: skip
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(_CONNECT_RETRY_S)
                continue
            self._producer = producer
            log.info("producer connected to %s", self._settings.bootstrap_servers)
            return

    async def stop(self) -> None:
        """Deliver what is buffered, then close."""
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> Published:
        """Send one record and wait for the broker's acknowledgement, at most OFFLOAD_PUBLISH_TIMEOUT_S."""
        producer = self._producer
        if producer is None:
            raise PublishFailed(f"not connected to Kafka at {self._settings.bootstrap_servers} yet")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                delivery = await producer.send(topic, value=value, key=key, headers=list(headers))
                delivery.add_done_callback(_observe)
                # Once the record is in the producer's buffer a timeout only stops our waiting: the
                # record may still land, and consumers deduplicate by event_id.
                metadata = await asyncio.shield(delivery)
        except TimeoutError:
            raise PublishFailed(
                f"Kafka did not acknowledge within {self._timeout_s:g}s ({time.monotonic() - started:.1f}s)"
            ) from None
        except KafkaError as error:
            raise PublishFailed(f"Kafka refused the record: {type(error).__name__}: {error}") from None
        return Published(metadata.partition, metadata.offset)

    async def kafka_reachable(self) -> bool:
        """True when the producer is connected and a broker answers a metadata request now."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(_READY_PROBE_TIMEOUT_S):
                await producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError):
            return False
        return True
