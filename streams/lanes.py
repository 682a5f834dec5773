"""Many records of a partition in flight at once, one at a time per key, acknowledged in offset order.

The answer and case-request agents spend their time waiting for Offload. Handled one record at a time per
partition, a worker would carry partitions / latency calls a second whatever Offload allows, and one slow
case would hold up every case of its partition. Here each agent's stream (one per partition: the agents
run with ``isolated_partitions``) is read ahead into a *window* of records, and each record joins the
*lane* of its key (caseId, requestId): one task per key with records, handling them one at a time in the
order they came. At most ``in_flight`` records are handled at once across the worker's partitions and the
feature's agents; the agents of a feature share one ``KeyedLanes``, so an answer and a retry of the same
case never run at once either.

**Offsets.** A record is *settled* once its handler returned (its terminal outcome, or its next attempt on
the retry topic, acknowledged by the broker) or its failure was routed (``failed``). Records are
acknowledged to Faust only from the head of their window, in the order they came, each once it and every
earlier record of its partition are settled: Faust never sees an acknowledgement past an unsettled
record, so its commits never depend on its gap tracking. That tracking cannot be trusted with records
settled out of order: ``Consumer._new_offset`` (faust 0.15.3) commits the first run of consecutive
acknowledged offsets, skipping a gap at the head when ``min(acked) - committed > 1`` only; a gap of
exactly one record (the slow first record while later ones finish) is committed over, and while the
committed offset is 0 or unknown the check is skipped altogether. A SIGKILL then loses the slow record.

How Faust allows it: the agent iterates ``stream.noack()``, on which Faust acknowledges nothing itself
(only records it drops while a rebalance suspends the streams, which it never delivers), and the window
calls ``Stream.ack(event)`` for each settled record at its head. A window holds at most
``WINDOW_PER_SLOT * in_flight`` records: a slow record at the head holds up the records of its partition
behind it up to that many, then the agent stops reading its partition until the head settles.

**Table writes.** Faust writes a table entry (its changelog partition, its rocksdb partition) for the
partition of the *current event*, a context variable that stream iteration sets; a write without one
raises (faust #497). Each record is handled in its lane's task with that variable set to the record's own
event, so a handler writes the tables exactly as it would in the ``async for`` body: the partition of its
record, and while that record is unacknowledged, which keeps the partition this worker's: a rebalance
waits until every delivered record is acknowledged (``stream_wait_empty``) before it takes partitions
away. The case-state table is written through its one writer (``state.batch``), which needs no event.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from faust.streams import _current_event
from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

# Records a window holds per record handled at once: the read-ahead behind a slow record at the head.
WINDOW_PER_SLOT = 4

Handle = Callable[[Any], Awaitable[None]]
Failed = Callable[[Any, Exception], Awaitable[None]]


def record_key(message: Any) -> Hashable:
    """The lane of a record: its Kafka key; a record without one has a lane of its own."""
    key = message.key
    return key if key is not None else (message.topic, message.partition, message.offset)


@dataclass(eq=False)
class _Entry:
    event: Any
    window: _Window
    settled: bool = False


class _Window:
    """One stream's records (one partition's) in the order they came, acknowledged from the head, and
    what handles them (a lane holds records of the feature's streams: each is handled by its own)."""

    def __init__(self, stream: Any, size: int, handle: Handle, failed: Failed, before: Handle | None) -> None:
        self.stream = stream  # the noack stream the events came from; acknowledges them
        self.size = size
        self.handle = handle
        self.failed = failed
        self.before = before
        self.entries: deque[_Entry] = deque()
        self.room = asyncio.Event()
        self.room.set()
        self.closed = False
        self._acking = False

    def admit(self, event: Any) -> _Entry:
        entry = _Entry(event, self)
        self.entries.append(entry)
        if len(self.entries) >= self.size:
            self.room.clear()
        return entry

    async def settle(self, entry: _Entry) -> None:
        """``entry`` is settled: acknowledge the settled records at the head, in order."""
        entry.settled = True
        if self._acking:
            return  # the acknowledging call in progress reaches this entry too
        self._acking = True
        try:
            while self.entries and self.entries[0].settled and not self.closed:
                await self.stream.ack(self.entries.popleft().event)
        finally:
            self._acking = False
        if len(self.entries) < self.size:
            self.room.set()


class KeyedLanes:
    """The lanes of one feature: every key with records has one task handling them in order."""

    def __init__(self, name: str, in_flight: int) -> None:
        self.name = name
        self.in_flight = in_flight
        self.window_size = WINDOW_PER_SLOT * in_flight
        self._slots = asyncio.Semaphore(in_flight)
        self._lanes: dict[Hashable, deque[_Entry]] = {}
        self._tasks: dict[Hashable, asyncio.Task[None]] = {}
        self.handling = 0  # records being handled now
        self.held = 0  # records read and not yet acknowledged (handled, waiting, or settled behind the head)

    async def consume(
        self,
        stream: Any,
        handle: Handle,
        failed: Failed,
        before: Handle | None = None,
        key: Callable[[Any], Hashable] = record_key,
    ) -> None:
        """Hand every record of ``stream`` to ``handle`` in its key's lane. A record ``handle`` raised on
        goes to ``failed`` (called while the exception is handled); one ``failed`` raised on is logged.
        ``before``: awaited in the lane before the record takes a slot (a retry record's wait until due).
        Never returns while the stream runs; when cancelled, the records not settled stay unacknowledged.
        """
        manual = stream.noack()
        window = _Window(manual, self.window_size, handle, failed, before)
        try:
            async for event in manual.events():
                entry = window.admit(event)
                self.held += 1
                lane_key = key(event.message)
                lane = self._lanes.get(lane_key)
                if lane is None:
                    self._lanes[lane_key] = lane = deque()
                    self._start(lane_key, lane)
                lane.append(entry)
                await window.room.wait()
        finally:
            self._close(window)

    def _start(self, lane_key: Hashable, lane: deque[_Entry]) -> None:
        self._tasks[lane_key] = asyncio.create_task(self._run(lane_key, lane), name=f"{self.name}-lane")

    async def _run(self, lane_key: Hashable, lane: deque[_Entry]) -> None:
        """Handle the lane's records one at a time; the lane ends (and is forgotten) once empty."""
        try:
            while lane:
                entry = lane[0]
                if not entry.window.closed:
                    await self._handle(entry)
                    self.held -= 1
                    await entry.window.settle(entry)
                lane.popleft()
        finally:
            # Emptied, or cancelled because its window closed: either way this task is done with the lane.
            if self._lanes.get(lane_key) is lane:
                del self._lanes[lane_key]
                del self._tasks[lane_key]
            if lane and lane[0].window.closed:
                lane.popleft()
            live = [entry for entry in lane if not entry.window.closed]
            if live and lane_key not in self._lanes:
                # Records of another stream were queued behind: they get a lane of their own.
                rest: deque[_Entry] = deque(live)
                self._lanes[lane_key] = rest
                self._start(lane_key, rest)

    async def _handle(self, entry: _Entry) -> None:
        message = entry.event.message
        window = entry.window
        if window.before is not None:
            try:
                await window.before(message)
            except Exception:
                log.exception("%s: waiting before handling %s[%s]@%s failed", self.name,
                              message.topic, message.partition, message.offset)  # fmt: skip
        async with self._slots:
            self.handling += 1
            # Faust's own way of saying which record is being handled: its table writes go to that
            # record's partition (see the module's notes).
            token = _current_event.set(weakref.ref(entry.event))
            try:
                await window.handle(message)
            except Exception as error:
                try:
                    await window.failed(message, error)
                except Exception:
                    log.exception("%s: routing the failure of %s[%s]@%s failed", self.name,
                                  message.topic, message.partition, message.offset)  # fmt: skip
            finally:
                _current_event.reset(token)
                self.handling -= 1

    def stats(self) -> dict[str, int]:
        """What ``/stats`` shows of the lanes."""
        return {"inFlight": self.handling, "held": self.held}

    def gauges(self, prefix: str) -> list[Metric]:
        """``<prefix>_in_flight`` and ``<prefix>_held`` for ``GET /metrics``."""
        return [
            GaugeMetricFamily(
                f"{prefix}_in_flight", f"{self.name} records being handled", value=self.handling
            ),
            GaugeMetricFamily(
                f"{prefix}_held",
                f"{self.name} records read and not yet acknowledged (being handled, waiting for their "
                "lane, or settled behind an earlier record of their partition)",
                value=self.held,
            ),
        ]

    def _close(self, window: _Window) -> None:
        """The stream ended (its actor stopped): its records not settled are dropped, unacknowledged, and
        the lanes handling one of them stop."""
        window.closed = True
        dropped = [entry for entry in window.entries if not entry.settled]
        self.held -= len(dropped)
        for lane_key, lane in list(self._lanes.items()):
            if lane and lane[0].window is window:
                self._tasks[lane_key].cancel()
        window.entries.clear()
        window.room.set()
