"""The fold's changes, held per batch and made durable together: each changed case costs one write.

Faust writes a changelog record per table assignment, and a case-state record per event doubled that:
two produce calls through Faust's buffers for every event, most of the fold's time. Here the agent folds
into an open batch; a flush (once ``OFFLOAD_STATE_BATCH_EVENTS`` events are held, or
``OFFLOAD_STATE_BATCH_MS`` after the first of them) writes each changed case once, in this order:

1. its CaseState to ``case-state``, and waits for the broker's acknowledgement;
2. its CaseRecord to the table's changelog, and waits;
3. the local store (with rocksdb also the changelog offset the store now holds, as Faust does);
4. only then acknowledges the batch's events to Faust, which may commit their offsets.

A crash anywhere leaves the committed offsets at or before the first event whose change is not in both
topics, so a restart folds those events again against the recovered table, and the fold is
deterministic. The order makes that replay complete: an event the changelog already holds folds as a
duplicate, which publishes nothing, so its case-state record must have been acknowledged first (1
before 2); and the local store, which rocksdb keeps across restarts, never holds a change the changelog
lacks (3 after 2). Faust waits for every delivered event to be acknowledged before it gives partitions
away or stops (``stream_wait_empty``), and the timer flushes a partial batch, so a rebalance never
strands a batch.

Queries and the next events read through the held batches (``get``): a change is visible at once; only
the topics and the committed offsets move per batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition

from offload_bridge.kafka.connection import aiokafka_options
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.case_state import CaseRecord, CheckSchedule
from offload_bridge.settings import Settings
from offload_bridge.streams.retry import backoff_s
from offload_bridge.streams.state.changes import CaseChanges
from offload_bridge.streams.storage import ModelTable, write_local

log = logging.getLogger(__name__)

# One produce request per partition and flush: large enough for a full batch of case records.
MAX_REQUEST_BYTES = 4 * 1024 * 1024


@dataclass
class _Batch:
    changes: dict[str, tuple[int, CaseRecord]] = field(default_factory=dict)
    # The cases whose state changed (not only their reconcile schedule): they go to case-state too.
    states_changed: set[str] = field(default_factory=set)
    events: list[Any] = field(default_factory=list)  # Faust events, acknowledged once durable
    opened_at: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.events and not self.changes

    def note_opened(self) -> None:
        if self.empty:
            self.opened_at = time.monotonic()


class StateWriter:
    """Holds the fold's changes until they are on the broker, then acknowledges their events."""

    def __init__(
        self, settings: Settings, table: ModelTable[CaseRecord], case_state_topic: str, changes: CaseChanges
    ) -> None:
        self.settings = settings
        self.table = table
        self.case_state_topic = case_state_topic
        self.changes = changes  # told of each change once the local store holds it
        self.batch_events = settings.offload_state_batch_events
        self.batch_s = settings.offload_state_batch_ms / 1000
        self._open = _Batch()
        self._flushing: _Batch | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stream: Any = None

    # --- what the agent calls --------------------------------------------------------------------

    def get(self, case_id: str) -> CaseRecord | None:
        """The newest record of a case: the open batch, the batch being written, then the table."""
        change = self._open.changes.get(case_id)
        if change is None and self._flushing is not None:
            change = self._flushing.changes.get(case_id)
        if change is not None:
            return change[1]
        # The store itself, not the table: the table's get adds a sensor call per read, a tenth of the
        # fold's own time.
        record: CaseRecord | None = self.table.data.get(case_id)
        return record

    def put(self, case_id: str, partition: int, record: CaseRecord, *, state_changed: bool = True) -> None:
        """The case's new record, written with the open batch; to case-state too unless only its
        reconcile schedule changed (downstream readers see the state, never the schedule)."""
        self._open.note_opened()
        self._open.changes[case_id] = (partition, record)
        if state_changed:
            self._open.states_changed.add(case_id)

    def reschedule(self, case_id: str, check: CheckSchedule | None) -> None:
        """The case's next reconcile check, written with the open batch (the changelog and the local
        store only). A case without a record is left alone: its first event will schedule it."""
        record = self.get(case_id)
        if record is None or record.check == check:
            return
        partition = partition_for(case_id, self.settings.offload_topic_partitions)
        self.put(case_id, partition, record.model_copy(update={"check": check}), state_changed=False)

    async def hold(self, stream: Any, event: Any) -> None:
        """Acknowledge ``event`` with its batch; starts a flush once the batch is full."""
        if self._stream is None:
            self._stream = stream
            self._timer = asyncio.create_task(self._flush_on_time(), name="case-state-batch-timer")
        batch = self._open
        batch.note_opened()
        batch.events.append(event)
        if len(batch.events) >= self.batch_events:
            await self.flush()

    async def save(self, case_id: str, record: CaseRecord) -> None:
        """A change made outside the fold (an accepted answer): written with the open batch, now."""
        self.put(case_id, partition_for(case_id, self.settings.offload_topic_partitions), record)
        await self.drain()

    async def flush(self) -> None:
        """Start writing the open batch (after the one being written, if any); returns once started."""
        async with self._start_lock:
            if self._flush_task is not None:
                # One batch in flight: the agent folds the next while this one is written, and waits
                # here only when it has filled another.
                await asyncio.shield(self._flush_task)
            batch = self._open
            if batch.empty:
                return
            self._open = _Batch()
            self._flushing = batch
            self._flush_task = asyncio.create_task(self._write_until_done(batch), name="case-state-flush")

    async def drain(self) -> None:
        """Write everything held and wait for it (before the worker stops)."""
        await self.flush()
        if self._flush_task is not None:
            await asyncio.shield(self._flush_task)

    async def close(self) -> None:
        await self.drain()
        if self._timer is not None:
            self._timer.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # --- the flush -------------------------------------------------------------------------------

    async def _flush_on_time(self) -> None:
        while True:
            await asyncio.sleep(self.batch_s / 2)
            batch = self._open
            if not batch.empty and time.monotonic() - batch.opened_at >= self.batch_s:
                try:
                    await self.flush()
                except Exception:
                    log.exception("case-state: a timed flush failed to start")

    async def _write_until_done(self, batch: _Batch) -> None:
        """Write ``batch``; on a failure, again with backoff: its events stay unacknowledged meanwhile, so
        nothing is committed past them and the fold waits rather than lose a change."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._write(batch)
                break
            except Exception:
                delay = backoff_s(
                    attempt, self.settings.offload_retry_base_s, self.settings.offload_retry_max_s
                )
                log.exception("case-state: writing a batch of %d changes failed; again in %.1fs",
                              len(batch.changes), delay)  # fmt: skip
                await asyncio.sleep(delay)
        if self._flushing is batch:
            self._flushing = None
        self._flush_task = None

    async def _write(self, batch: _Batch) -> None:
        # Per partition: (caseId, record, its JSON) and the two topics' records. Each value is encoded
        # once: the state's JSON goes to case-state and, wrapped, into the record's JSON.
        stored: dict[int, list[tuple[str, CaseRecord, bytes]]] = defaultdict(list)
        states: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        records: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for case_id, (partition, record) in batch.changes.items():
            state_json = record.state.model_dump_json().encode()
            encoded = record_json(record, state_json)
            stored[partition].append((case_id, record, encoded))
            if case_id in batch.states_changed:
                states[partition].append((case_id.encode(), state_json))
            records[partition].append((case_id.encode(), encoded))
        producer = await self._started_producer()
        await self._produce(producer, self.case_state_topic, states)
        changelog = self.table.changelog_topic.get_topic_name()
        last_offsets = await self._produce(producer, changelog, records)
        for partition, items in stored.items():
            changelog_tp = TopicPartition(changelog, partition)
            write_local(self.table, partition, items, changelog_tp, last_offsets[partition])
        for event in batch.events:
            await self._stream.ack(event)
        for case_id, (partition, record) in batch.changes.items():
            self.changes.publish(case_id, partition, record)

    async def _produce(
        self, producer: AIOKafkaProducer, topic: str, records: dict[int, list[tuple[bytes, bytes]]]
    ) -> dict[int, int]:
        """Send each partition's records as few batches and wait for all; the last offset per partition."""
        pending: list[tuple[int, int, asyncio.Future[Any]]] = []
        for partition, items in records.items():
            for count, batch in _batches(producer, items):
                future = await producer.send_batch(batch, topic, partition=partition)
                pending.append((partition, count, future))
        last: dict[int, int] = {}
        for partition, count, future in pending:
            metadata = await future
            last[partition] = max(last.get(partition, -1), metadata.offset + count - 1)
        return last

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                **aiokafka_options(self.settings),
                acks="all",
                enable_idempotence=True,
                max_batch_size=MAX_REQUEST_BYTES,
                max_request_size=MAX_REQUEST_BYTES,
            )
            await producer.start()
            self._producer = producer
        return self._producer


def record_json(record: CaseRecord, state_json: bytes) -> bytes:
    """``record``'s JSON as the table's codec writes it, around its state's JSON already encoded."""
    ids = json.dumps(record.recentEventIds, separators=(",", ":"), ensure_ascii=False).encode()
    check = record.check.model_dump_json().encode() if record.check is not None else b"null"
    return b'{"state":' + state_json + b',"recentEventIds":' + ids + b',"check":' + check + b"}"


def _batches(producer: AIOKafkaProducer, items: Iterable[tuple[bytes, bytes]]) -> Iterable[tuple[int, Any]]:
    """(record count, BatchBuilder) covering ``items`` in order."""
    batch = producer.create_batch()
    count = 0
    for key, value in items:
        if batch.append(key=key, value=value, timestamp=None) is None:
            yield count, batch
            batch = producer.create_batch()
            count = 0
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a record of {len(value)} bytes exceeds the producer's batch size")
        count += 1
    if count:
        yield count, batch
