"""What the exporter holds of one partition between two flushes, and the flush that empties it.

A partition's state lives from the moment the exporter is assigned the partition to the moment it loses it:

- ``start``: the offset the current run of records began at, i.e. the group's committed offset. A flush
  covers every record read since, ``[first, next)``, contiguous in the partition: records that made no row
  (a ``retrying`` outcome, a duplicate event, a skipped record) are inside the range too, so committing
  ``next`` never jumps over a record that was not looked at.
- the buffered rows, by ``date=`` partition, as tuples of column values;
- for events, the ids already written (``seen``: rebuilt from the partition's files when it is assigned)
  and those buffered (``pending``). Both hold ``hash(event_id)`` rather than the strings: a 64-bit hash per
  event instead of its ~90-character id. Two different ids of one partition share a hash with probability
  about n^2 / 2^65 (1e-8 at a million events in a partition); the cost of one would be a missing row.

On a revoke the state is dropped whole: the partition's next owner starts again from the committed offset,
so nothing buffered here can be lost or written twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from offload_bridge.analytics.tables import TableSpec
from offload_bridge.export.rows import Row


@dataclass(frozen=True)
class Flush:
    """The rows of the contiguous offsets ``[first, next)`` of one partition, by ``date=``."""

    table: TableSpec
    topic: str
    partition: int
    first: int
    next: int
    rows_by_date: dict[str, list[tuple[Any, ...]]]
    event_ids: frozenset[int]  # hashes of the event ids in it, seen once it is committed

    @property
    def row_count(self) -> int:
        return sum(len(rows) for rows in self.rows_by_date.values())


@dataclass
class PartitionBuffer:
    table: TableSpec
    topic: str
    partition: int
    start: int  # the committed offset: where this run of records began
    seen: set[int] = field(default_factory=set)  # hash(event_id) of every event already in a file
    next: int = -1  # the offset after the last record read
    first: int | None = None  # the offset of the first record since the last flush
    rows_by_date: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    pending: set[int] = field(default_factory=set)
    rows: int = 0
    oldest: float | None = None  # monotonic time the first record since the last flush was read

    def __post_init__(self) -> None:
        self.next = self.start

    def add(self, offset: int, row: Row | None) -> bool:
        """Take the record at ``offset`` and its row (None: the record makes no row). Returns False when
        the row is a duplicate of an event already written or buffered, and is left out."""
        if self.first is None:
            self.first = offset
            self.oldest = time.monotonic()
        self.next = offset + 1
        if row is None:
            return True
        if row.event_id is not None:
            key = hash(row.event_id)
            if key in self.seen or key in self.pending:
                return False
            self.pending.add(key)
        rows = self.rows_by_date.get(row.date)
        if rows is None:
            rows = self.rows_by_date[row.date] = []
        rows.append(row.values)
        self.rows += 1
        return True

    def due(self, now: float, roll_rows: int, roll_s: float) -> bool:
        """True when the buffer must be written: enough rows, or its oldest record waited long enough."""
        if self.first is None:
            return False
        return self.rows >= roll_rows or (self.oldest is not None and now - self.oldest >= roll_s)

    @property
    def empty(self) -> bool:
        return self.first is None

    def take(self) -> Flush:
        """Everything read since the last flush, leaving the buffer empty at ``next``."""
        assert self.first is not None, "nothing to flush"
        flush = Flush(
            self.table,
            self.topic,
            self.partition,
            self.first,
            self.next,
            self.rows_by_date,
            frozenset(self.pending),
        )
        self.first, self.oldest, self.rows = None, None, 0
        self.rows_by_date, self.pending = {}, set()
        return flush

    def committed(self, flush: Flush) -> None:
        """``flush`` is durable and its offset committed: the next run starts after it."""
        self.start = flush.next
        self.seen |= flush.event_ids
