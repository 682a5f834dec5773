"""One terminal outcome per source record, across crashes and redelivery.

A worker killed after it published an outcome but before Faust committed the source record's offset gets
that record again after the restart, and would publish a second terminal outcome (``accepted`` then
``duplicate``). The journal remembers, per record key (caseId, requestId), which source records already
have their terminal outcome on the outcome topic, and never publishes another one for them.

The record and its journal entry cannot be written atomically (no transactions), so the order makes the
journal complete enough. For each partition ``p`` of the outcome topic, one group of outcomes at a time:

1. the group's outcomes are published, each with the header ``origin`` = ``<topic>:<partition>:<offset>``
   of its source record, and the broker's acknowledgements (their offsets) are awaited;
2. the journal table then gets ``origin -> offset`` under each record's key, and last the partition's
   *mark* ``k``, the group's highest offset.

A group is every outcome of the partition that was waiting when the previous group was done: with many
records in flight (``lanes``), their outcomes share produce requests and acknowledgements, and one group
after another keeps the mark's promise. Before it handles a record, the caller *claims* its origin
(``claim``): no second outcome is published while the first is on its way.

The journal's changelog keeps that order, so after a crash its recovered mark ``m`` says every terminal
outcome up to offset ``m`` is in the table; those after ``m`` (published, journal write lost) are found
by reading the outcome partition from ``m + 1`` to its end once, before the first record of the
partition is handled after an assignment. Outcomes that are not terminal (``retrying``) carry no origin.

Every key of the table is placed by Kafka's partitioner like the source records, the marks too: a mark
uses a key that hashes to the partition it describes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from itertools import count
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel, Field

from offload_bridge.kafka.connection import aiokafka_options
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.headers import ORIGIN_HEADER
from offload_bridge.settings import Settings
from offload_bridge.streams.storage import add_model_table, store_options

log = logging.getLogger(__name__)

# Origins remembered per key: a case sees a few answers, a requestId one request. Older origins are
# only needed while their source offsets are uncommitted, a few seconds at most.
MAX_ORIGINS_PER_KEY = 64
_CATCH_UP_RETRY_S = 2.0
_FETCH_TIMEOUT_MS = 1000


class JournalEntry(BaseModel):
    """The journal's value: the origins of a key, or (under a mark key) a partition's mark."""

    origins: dict[str, int] = Field(default_factory=dict, description="origin -> outcome offset")
    mark: int | None = Field(default=None, description="offset of the last journaled outcome")


@dataclass(eq=False)
class _Waiting:
    """An outcome waiting to be published with its partition's next group."""

    key: str
    origin: str
    value: bytes
    headers: list[tuple[str, bytes]]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def origin_of(message: Any) -> str:
    """Where a source record sits: ``<topic>:<partition>:<offset>``."""
    return f"{message.topic}:{message.partition}:{message.offset}"


@cache
def mark_key(partition: int, partitions: int) -> str:
    """A key Kafka's partitioner puts in ``partition``, for that partition's mark."""
    for n in count():
        key = f"~mark-{n}"
        if partition_for(key, partitions) == partition:
            return key
    raise AssertionError("unreachable")  # pragma: no cover


class OutcomeJournal:
    """Publishes terminal outcomes to one topic at most once per source record."""

    def __init__(self, app: faust.App, settings: Settings, table_name: str, outcomes: Any, help: str) -> None:
        self.settings = settings
        self.partitions = settings.offload_topic_partitions
        self.outcomes = outcomes  # faust TopicT, raw bytes
        # Keys written raw, so the changelog places them with Kafka's partitioner like the source topic.
        self.table = add_model_table(
            app, table_name, JournalEntry, self.partitions, help=help, exclude_defaults=True,
            store_options=store_options(settings),
        )  # fmt: skip
        self._locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._caught_up: set[int] = set()
        self._claimed: set[str] = set()  # origins whose outcome is being published
        self._waiting: dict[int, list[_Waiting]] = defaultdict(list)  # outcomes waiting for a group
        self.recovered = 0  # outcomes found on the topic whose journal write had been lost

        @app.on_partitions_revoked.connect
        async def forget_catch_up(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            # Another worker may own the partition before it comes back: catch up again then.
            revoked: set[Any] = args[0] if args else set()
            for tp in revoked:
                self._caught_up.discard(tp.partition)

    async def caught_up(self, partition: int) -> None:
        """Return once the journal knows every terminal outcome published on ``partition`` (read from the
        topic once per assignment, from the recovered mark on)."""
        if partition in self._caught_up:
            return
        async with self._locks[partition]:
            while partition not in self._caught_up:
                try:
                    await self._catch_up(partition)
                except Exception as error:
                    # Never guess: a record handled without the journal could get a second outcome.
                    log.error(
                        "%s[%d]: cannot read the outcomes published before (%r); retrying",
                        self.outcomes.get_topic_name(), partition, error,
                    )  # fmt: skip
                    await asyncio.sleep(_CATCH_UP_RETRY_S)
                else:
                    self._caught_up.add(partition)

    async def seen(self, key: str, origin: str, partition: int) -> bool:
        """``done``, once caught up with partition ``partition``: to skip a record before any work."""
        await self.caught_up(partition)
        return self.done(key, origin)

    def done(self, key: str, origin: str) -> bool:
        """True when the record at ``origin`` already has its terminal outcome."""
        entry = self.table.get(key)
        return entry is not None and origin in entry.origins

    async def claim(self, key: str, origin: str, partition: int) -> bool:
        """Take the right to publish the terminal outcome of the record at ``origin``: False when it has
        one, or another claim is being published. Follow with ``publish`` or, when nothing could be
        published, ``unclaim``. Call within the handling of a record of ``partition`` (a table write)."""
        await self.caught_up(partition)
        if origin in self._claimed or self.done(key, origin):
            return False
        self._claimed.add(origin)
        return True

    def unclaim(self, origin: str) -> None:
        self._claimed.discard(origin)

    async def publish(
        self,
        key: str,
        origin: str,
        value: bytes,
        partition: int,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Publish the claimed terminal outcome of the record at ``origin`` and journal it; returns once
        both are done. Raises what publishing raised (the claim is given back)."""
        waiting = _Waiting(key, origin, value, [*headers, (ORIGIN_HEADER, origin.encode())])
        queue = self._waiting[partition]
        queue.append(waiting)
        try:
            async with self._locks[partition]:
                if not waiting.done.done():
                    group = list(queue)
                    queue.clear()
                    await self._publish_group(group, partition)
            await waiting.done
        finally:
            self._claimed.discard(origin)

    async def _publish_group(self, group: list[_Waiting], partition: int) -> None:
        try:
            sent = [
                await self.outcomes.send(key=item.key.encode(), value=item.value, headers=item.headers)
                for item in group
            ]
            offsets = [int((await future).offset) for future in sent]
            for item, offset in zip(group, offsets, strict=True):
                self._record(item.key, item.origin, offset)
            self._mark(max(offsets), partition)
        except BaseException as error:
            for item in group:
                if item.done.done():
                    continue
                if isinstance(error, Exception):
                    item.done.set_exception(error)
                else:
                    item.done.cancel()
            raise
        for item in group:
            item.done.set_result(None)

    def _record(self, key: str, origin: str, offset: int) -> None:
        entry = self.table.get(key)
        origins = {**(entry.origins if entry is not None else {}), origin: offset}
        if len(origins) > MAX_ORIGINS_PER_KEY:
            kept = sorted(origins.items(), key=lambda item: item[1])[-MAX_ORIGINS_PER_KEY:]
            origins = dict(kept)
        # New values, never mutated in place: the changelog must see each change.
        self.table[key] = JournalEntry(origins=origins)

    def _mark(self, offset: int, partition: int) -> None:
        self.table[mark_key(partition, self.partitions)] = JournalEntry(mark=offset)

    async def _catch_up(self, partition: int) -> None:
        """Journal the terminal outcomes published after the partition's mark."""
        marked = self.table.get(mark_key(partition, self.partitions))
        start = marked.mark + 1 if marked is not None and marked.mark is not None else 0
        tp = TopicPartition(self.outcomes.get_topic_name(), partition)
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self.settings),
            client_id=f"{self.settings.worker_app_id}-journal",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        found = 0
        try:
            consumer.assign([tp])
            end: int = (await consumer.end_offsets([tp]))[tp]
            if start >= end:
                return
            consumer.seek(tp, start)
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=_FETCH_TIMEOUT_MS)
                for record in batch.get(tp, ()):
                    if record.offset >= end:
                        break
                    origin = _header(record.headers, ORIGIN_HEADER)
                    if origin is None or record.key is None:
                        continue
                    key = record.key.decode(errors="replace")
                    if not self.done(key, origin):
                        found += 1
                    self._record(key, origin, record.offset)
                    self._mark(record.offset, partition)
        finally:
            await consumer.stop()
        self.recovered += found
        if found:
            log.warning(
                "%s[%d]: %d outcome(s) published before a crash were not journaled yet; journaled now",
                tp.topic, partition, found,
            )  # fmt: skip


def header(message: Any, name: str) -> str | None:
    """The text of header ``name`` of a Faust message, or None."""
    headers = message.headers
    if isinstance(headers, Mapping):
        value = headers.get(name)
        return value.decode(errors="replace") if isinstance(value, bytes) else None
    return _header(headers, name)


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode(errors="replace")
    return None
