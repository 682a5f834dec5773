"""Many records of a partition in flight at once, one at a time per key, acknowledged in offset order.

The answer and case-request agents spend their time waiting for Offload. Handled one record at a time per
partition, a worker would carry partitions / latency calls a second whatever Offload allows, and one slow
case would hold up every case of its partition. Here each agent's stream (one per partition: the agents
run with ``isolated_partitions``) is read ahead into a *window* of records, and each record joins the
*lane* of its key (caseId, requestId): one task per key with records, handling them one at a time in the
order they came. The agents of a feature share one ``KeyedLanes``, so an answer and a retry of the same
case never run at once either. How many calls to Offload the handlers make at once is the feature's view
of the Offload client's business (``OffloadApi.bounded``: ``OFFLOAD_ANSWER_IN_FLIGHT``, ...): a record
holds one of those only during its call, not while its outcome is written.

**Offsets.** A record is *settled* once its handler returned (its terminal outcome, or its next attempt on
the retry topic, acknowledged by the broker) or its failure was routed (``failed``). Records are
acknowledged to Faust only from the head of their window, in the order they came, each once it and every
earlier record of its partition are settled: Faust never sees an acknowledgement past an unsettled
record, so its commits never depend on its gap tracking. That tracking cannot be trusted with records
settled out of order: ``Consumer._new_offset`` (faust 0.15.3) commits the first run of consecutive
acknowledged offsets, skipping a gap at the head when ``min(acked) - committed > 1`` only; a gap of
exactly one record (the slow first record while later ones finish) is committed over, and while the
committed offset is 0 or unknown the check is skipped altogether. A SIGKILL then loses the slow record.

How Faust allows it: the agent iterates ``stream.noack()``, on which Faust acknowledges nothing itself,
and the window calls ``Stream.ack(event)`` for each settled record at its head. A window holds at most
``WINDOW_PER_CALL * in_flight`` records: a slow record at the head holds up the records of its partition
behind it up to that many, then the agent stops reading its partition until the head settles. A stop or
a rebalance waits until the records a window holds are settled (Faust's ``stream_wait_empty``).

One acknowledgement escapes the order: a record the stream takes while a rebalance has suspended the
streams (a delivery under way when the buffers were emptied) is dropped and acknowledged by Faust itself,
never delivered; behind an unsettled record of ours, that is the one-record gap again. So the commit is
also bounded (``install_commit_barrier``): Faust's new offset for a partition never passes the first
record a window still holds.

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
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any

from faust.streams import _current_event
from faust.transport.consumer import Consumer
from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

# Records a window holds per call the feature may have in flight: the read-ahead behind a slow record at
# the head, and what a stop or a rebalance waits for.
WINDOW_PER_CALL = 2
_PATCHED = "_bounded_by_the_lanes"
# The windows reading each topic partition (by Faust's TP): the commit barrier asks them.
_windows_of: dict[Any, set[_Window]] = defaultdict(set)

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
        self.tp: Any = None  # Faust's TP of the records, known from the first

    def admit(self, event: Any) -> _Entry:
        if self.tp is None:
            self.tp = event.message.tp
            _windows_of[self.tp].add(self)
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

    def first_held(self) -> int | None:
        """The offset of the first record held and not acknowledged yet."""
        return int(self.entries[0].event.message.offset) if self.entries else None

    def close(self) -> None:
        self.closed = True
        if self.tp is not None:
            _windows_of[self.tp].discard(self)


def install_commit_barrier() -> None:
    """Bound every commit Faust makes by the windows: the new offset of a partition never passes the first
    record a window of it still holds. The offsets Faust acknowledged beyond are dropped from its list:
    never committed, they are delivered again (after a rebalance, or a restart)."""
    original = Consumer._new_offset
    if getattr(original, _PATCHED, False):
        return

    def _new_offset(self: Any, tp: Any) -> int | None:
        offset: int | None = original(self, tp)
        held = [first for window in _windows_of.get(tp, ()) if (first := window.first_held()) is not None]
        if offset is not None and held:
            # Faust commits only past what it committed before (``_should_commit``).
            return min(offset, *held)
        return offset

    setattr(_new_offset, _PATCHED, True)
    _new_offset.__wrapped__ = original  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


class KeyedLanes:
    """The lanes of one feature: every key with records has one task handling them in order."""

    def __init__(self, name: str, in_flight: int, calls: Callable[[], int] = lambda: 0) -> None:
        """``in_flight``: the calls the feature may have in flight, which sizes the windows; ``calls``: how
        many it has (for ``stats`` and ``gauges``)."""
        install_commit_barrier()
        self.name = name
        self.calls = calls
        self.window_size = WINDOW_PER_CALL * in_flight
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
        ``before``: awaited in the lane before the record is handled (a retry record's wait until due).
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
        self.handling += 1
        # Faust's own way of saying which record is being handled: its table writes go to that record's
        # partition (see the module's notes).
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
        return {"inFlight": self.calls(), "handling": self.handling, "held": self.held}

    def gauges(self, prefix: str) -> list[Metric]:
        """``<prefix>_in_flight``, ``<prefix>_handling`` and ``<prefix>_held`` for ``GET /metrics``."""
        return [
            GaugeMetricFamily(
                f"{prefix}_in_flight", f"calls to Offload for {self.name} under way", value=self.calls()
            ),
            GaugeMetricFamily(
                f"{prefix}_handling", f"{self.name} records being handled", value=self.handling
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
        window.close()
        dropped = [entry for entry in window.entries if not entry.settled]
        self.held -= len(dropped)
        for lane_key, lane in list(self._lanes.items()):
            if lane and lane[0].window is window:
                self._tasks[lane_key].cancel()
        window.entries.clear()
        window.room.set()
