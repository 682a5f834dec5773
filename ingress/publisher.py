"""The one Kafka producer of an ingress worker: durable sends (acks=all, idempotent) with a deadline.

The producer is librdkafka's (confluent-kafka): batching, retries and the network run in C threads, so a
webhook costs the event loop one ``produce()`` call and one future. A dedicated thread serves delivery
reports and hands them to the event loop in batches. The producer connects in the background and keeps
trying, so a worker started while the broker is down becomes ready when it comes up; once connected,
librdkafka reconnects by itself after a broker outage. A fatal producer error (the idempotence state can no
longer be kept) replaces the producer with a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from offload_bridge.kafka.connection import librdkafka_options
from offload_bridge.kafka.partitioning import LIBRDKAFKA_PARTITIONER
from offload_bridge.settings import Settings
from offload_bridge.topics import CASE_EVENTS, topic_name

log = logging.getLogger(__name__)
# librdkafka's own log lines (a failed reconnect every second while a broker is away): throttled.
kafka_log = logging.getLogger("librdkafka")

# Room for the record's headers and batch framing on top of the largest body we accept.
_RECORD_OVERHEAD_BYTES = 64 * 1024
_CONNECT_RETRY_S = 1.0
_READY_PROBE_TIMEOUT_S = 2.0
# How long the delivery thread blocks in librdkafka waiting for reports; also how soon it notices stop().
_POLL_INTERVAL_S = 0.1
_FLUSH_ON_STOP_S = 30.0
# How often waiting requests are checked against their deadline: a 503 comes at most this much late.
_DEADLINE_SWEEP_S = 0.05


class PublishFailed(RuntimeError):
    """The broker did not acknowledge in time or refused the record; the message says why."""


class RecordTooLarge(PublishFailed):
    """Kafka refused the record for its size: sending it again can never succeed, so this is the
    request's fault (413), not an outage (503). Raised by librdkafka's own check before sending, or from
    the broker when the topic's ``max.message.bytes`` is smaller than the record."""


# Refusals that say the record itself can never be written, whatever the broker's health.
_RECORD_SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})


def refused(error: KafkaError) -> PublishFailed:
    """The exception for a record Kafka refused, permanent for its size or otherwise."""
    message = f"Kafka refused the record: {error.name()}: {error.str()}"
    if error.code() in _RECORD_SIZE_ERRORS:
        return RecordTooLarge(message)
    return PublishFailed(message)


@dataclass(frozen=True)
class Published:
    partition: int
    offset: int


def producer_options(settings: Settings, client_id: str = "offload-bridge-ingress") -> dict[str, Any]:
    """librdkafka options: connection, plus the durability the contract asks for."""
    return {
        **librdkafka_options(settings),
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": client_id,
        # Every in-sync replica has the record before we answer 2xx; retries never duplicate or reorder.
        "acks": "all",
        "enable.idempotence": True,
        "message.max.bytes": settings.offload_webhook_max_bytes + _RECORD_OVERHEAD_BYTES,
        # A record nobody waits for any more is still worth delivering late: Offload never resends it.
        "message.timeout.ms": max(int(settings.offload_publish_timeout_s * 1000) * 6, 30_000),
        "linger.ms": settings.offload_ingress_linger_ms,
        # Kafka's default placement (murmur2), not librdkafka's CRC32: a case's webhooks must share the
        # partition of everything else keyed by its caseId, whichever client produced it.
        "partitioner": LIBRDKAFKA_PARTITIONER,
    }


Delivery = asyncio.Future[Published]


def _resolve(reports: list[tuple[Delivery, KafkaError | None, int, int]]) -> None:
    """On the event loop: settle the futures of a batch of delivery reports."""
    for delivery, error, partition, offset in reports:
        if delivery.done():
            # The request gave up waiting (timeout or client gone); the record still counts if it landed.
            if error is not None:
                log.warning("a record was not delivered: %s", error)
            continue
        if error is None:
            delivery.set_result(Published(partition, offset))
        else:
            delivery.set_exception(refused(error))


class _Connection:
    """One librdkafka producer and the thread serving its delivery reports."""

    def __init__(self, options: dict[str, Any], loop: asyncio.AbstractEventLoop, on_fatal: Any) -> None:
        self._loop = loop
        self._on_fatal = on_fatal
        self._stopping = threading.Event()
        self._reports: list[tuple[Delivery, KafkaError | None, int, int]] = []
        self.producer = Producer({**options, "error_cb": self._error, "logger": kafka_log})
        self._thread = threading.Thread(target=self._serve_reports, name="kafka-delivery", daemon=True)
        self._thread.start()

    def _serve_reports(self) -> None:
        while not self._stopping.is_set():
            self.producer.poll(_POLL_INTERVAL_S)
            self._hand_over()

    def _hand_over(self) -> None:
        # One wake-up of the event loop per batch of reports, not per record.
        if self._reports:
            reports, self._reports = self._reports, []
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                self._loop.call_soon_threadsafe(_resolve, reports)

    def report(self, delivery: Delivery) -> Any:
        def delivered(error: KafkaError | None, message: Message) -> None:
            self._reports.append((delivery, error, message.partition() or 0, message.offset() or 0))

        return delivered

    def _error(self, error: KafkaError) -> None:
        if error.fatal():
            log.error("the Kafka producer failed fatally (%s); starting a new one", error.str())
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._on_fatal, self)
        else:
            kafka_log.warning("Kafka: %s", error.str())

    def close(self, flush_s: float) -> int:
        """Stop the thread, deliver what is buffered within ``flush_s``; the number of records left over."""
        self._stopping.set()
        self._thread.join()
        left = int(self.producer.flush(flush_s))
        self._hand_over()
        return left


class Publisher:
    def __init__(self, settings: Settings, client_id: str = "offload-bridge-ingress") -> None:
        """``client_id``: the producer's name in the broker's logs and quotas (the inbox uses this class)."""
        self._settings = settings
        self._client_id = client_id
        self._timeout_s = settings.offload_publish_timeout_s
        self._probe_topic = topic_name(CASE_EVENTS, settings)
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[int]] = set()
        self._closed = False
        # Deliveries still awaited, with their deadlines. Every request gets the same timeout, so the
        # oldest is always first: one periodic sweep replaces a timer per request.
        self._waiting: deque[tuple[float, Delivery]] = deque()
        self._sweeping = False

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        self._connecting = asyncio.create_task(self._connect_until_done(), name="kafka-connect")

    async def _connect_until_done(self) -> None:
        loop = asyncio.get_running_loop()
        connection = _Connection(producer_options(self._settings, self._client_id), loop, self._replace)
        attempt = 0
        try:
            while not self._closed:
                if await self._answers(connection):
                    self._connection = connection
                    log.info("producer connected to %s", self._settings.bootstrap_servers)
                    return
                attempt += 1
                if attempt == 1 or attempt % 30 == 0:
                    log.warning("Kafka at %s not reachable yet; retrying", self._settings.bootstrap_servers)
                await asyncio.sleep(_CONNECT_RETRY_S)
        finally:
            if self._connection is not connection:
                # Never adopted (stopped while connecting): nothing was produced through it.
                connection.close(0)

    def _replace(self, failed: _Connection) -> None:
        """On the event loop: a fatal error retires the producer; a new one connects in its place."""
        if self._closed or self._connection is not failed:
            return
        self._connection = None
        retiring = asyncio.create_task(asyncio.to_thread(failed.close, 0), name="kafka-retire")
        self._retired.add(retiring)
        retiring.add_done_callback(self._retired.discard)
        self._connecting = asyncio.create_task(self._connect_until_done(), name="kafka-connect")

    async def stop(self) -> None:
        """Deliver what is buffered, then close."""
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)
        connection, self._connection = self._connection, None
        if connection is not None:
            left = await asyncio.to_thread(connection.close, _FLUSH_ON_STOP_S)
            if left:
                log.error("%d record(s) still unacknowledged when the producer closed", left)
            # Let the last reports settle their futures before the loop goes away.
            await asyncio.sleep(0)

    async def publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> Published:
        """Send one record and wait for the broker's acknowledgement, at most OFFLOAD_PUBLISH_TIMEOUT_S."""
        connection = self._connection
        if connection is None:
            raise PublishFailed(f"not connected to Kafka at {self._settings.bootstrap_servers} yet")
        loop = asyncio.get_running_loop()
        delivery: Delivery = loop.create_future()
        try:
            connection.producer.produce(
                topic, value, key, headers=list(headers), on_delivery=connection.report(delivery)
            )
        except BufferError:
            raise PublishFailed("the producer's buffer is full: Kafka has not acknowledged lately") from None
        except KafkaException as error:
            raise refused(error.args[0]) from None
        # Once the record is in the producer's buffer a timeout only stops our waiting: the record may
        # still land, and consumers deduplicate by event_id.
        self._waiting.append((loop.time() + self._timeout_s, delivery))
        if not self._sweeping:
            self._sweeping = True
            loop.call_later(_DEADLINE_SWEEP_S, self._sweep, loop)
        return await delivery

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the deliveries whose deadline passed; forget the settled ones."""
        now = loop.time()
        waiting = self._waiting
        while waiting and (waiting[0][1].done() or waiting[0][0] <= now):
            deadline, delivery = waiting.popleft()
            if not delivery.done():
                waited = now - deadline + self._timeout_s
                delivery.set_exception(
                    PublishFailed(f"Kafka did not acknowledge within {self._timeout_s:g}s ({waited:.1f}s)")
                )
        if waiting:
            loop.call_later(_DEADLINE_SWEEP_S, self._sweep, loop)
        else:
            self._sweeping = False

    async def _answers(self, connection: _Connection) -> bool:
        """True when a broker answers a metadata request through this producer now."""
        try:
            await asyncio.to_thread(
                connection.producer.list_topics, self._probe_topic, _READY_PROBE_TIMEOUT_S
            )
        except KafkaException:
            return False
        return True

    async def kafka_reachable(self) -> bool:
        """True when the producer is connected and a broker answers a metadata request now."""
        connection = self._connection
        return connection is not None and await self._answers(connection)
