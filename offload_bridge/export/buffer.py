"""What the exporter holds of one partition between two flushes, and the flush that empties it.

A partition's state lives from the moment the exporter is assigned the partition to the moment it loses it:

- ``start``: the offset the current run of records began at, i.e. the group's committed offset. A flush
  covers every record read since, ``[first, next)``, contiguous in the partition: records that made no row
  (a ``retrying`` outcome, a duplicate event, a skipped record) are inside the range too, so committing
  ``next`` never jumps over a record that was not looked at.
- the buffered rows, by ``date=`` partition, as Arrow tables (one per batch of records read, in offset
  order): a row costs its bytes in Arrow's memory, and no Python object per row for the garbage collector
  to walk again and again while a large buffer fills;
- for events, ``seen``: the ids already written (read from the partition's files when it is assigned) and
  those buffered since. It holds ``hash(event_id)`` rather than the strings: a 64-bit hash per event
  instead of its ~90-character id. Two different ids of one partition share a hash with probability about
  n^2 / 2^65 (1e-8 at a million events in a partition); the cost of one would be a missing row.

On a revoke the state is dropped whole: the partition's next owner starts again from the committed offset,
so nothing buffered here can be lost or written twice. So is it when a flush is not committed (its commit
did not land, the exporter stops on a failed write): which is why the ids of a flush can go into ``seen``
as soon as they are buffered, though they count as written only once the flush is committed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from offload_bridge.analytics.tables import EVENTS, TableSpec
from offload_bridge.export.rows import utc_date

DEDUP_COLUMN = "event_id"  # events are one row per distinct event_id
_DAY_MS = 86_400_000
# A quiet topic under --follow adds a table of a few rows per read, each with small buffers of its own:
# once the last _MERGE_TABLES tables of a date are all smaller than _SMALL_TABLE rows, they become one
# (which is not small then, so no row is copied twice).
_MERGE_TABLES = 64
_SMALL_TABLE = 64


@dataclass(frozen=True)
class Flush:
    """The rows of the contiguous offsets ``[first, next)`` of one partition, by ``date=``."""

    table: TableSpec
    topic: str
    partition: int
    first: int
    next: int
    tables_by_date: dict[str, list[pa.Table]]

    @property
    def row_count(self) -> int:
        return sum(table.num_rows for tables in self.tables_by_date.values() for table in tables)


@dataclass
class PartitionBuffer:
    table: TableSpec
    topic: str
    partition: int
    start: int  # the committed offset: where this run of records began
    seen: set[int] = field(default_factory=set)  # hash(event_id) of every event in a file or buffered
    next: int = -1  # the offset after the last record read
    first: int | None = None  # the offset of the first record since the last flush
    tables_by_date: dict[str, list[pa.Table]] = field(default_factory=dict)
    rows: int = 0
    oldest: float | None = None  # monotonic time the first record since the last flush was read

    def __post_init__(self) -> None:
        self.next = self.start

    def add(self, first: int, next: int, rows: pa.Table) -> int:
        """Take the records ``[first, next)`` (read in offset order) and the rows they made, in the same
        order. Returns how many rows were left out as duplicates of an event already written or buffered
        (the first record with an id is the one kept)."""
        if self.first is None:
            self.first = first
            self.oldest = time.monotonic()
        self.next = next
        duplicates = 0
        if self.table.name == EVENTS.name and rows.num_rows:
            rows, duplicates = self._deduplicate(rows)
        if rows.num_rows:
            self._add_by_date(rows)
        return duplicates

    def _deduplicate(self, rows: pa.Table) -> tuple[pa.Table, int]:
        hashes = list(map(hash, rows[DEDUP_COLUMN].to_pylist()))
        distinct = set(hashes)
        if len(distinct) == len(hashes) and distinct.isdisjoint(self.seen):
            self.seen |= distinct  # the usual case, decided by set operations in C
            return rows, 0
        keep: list[bool] = []
        for key in hashes:
            new = key not in self.seen
            if new:
                self.seen.add(key)
            keep.append(new)
        kept = rows.filter(pa.array(keep, pa.bool_()))
        return kept, rows.num_rows - kept.num_rows

    def _add_by_date(self, rows: pa.Table) -> None:
        """File the rows under the UTC day of their date column (a batch rarely spans two days)."""
        assert self.table.date_column is not None
        days = pc.divide(rows[self.table.date_column].cast(pa.int64()), _DAY_MS)
        first_day, last_day = pc.min_max(days).values()
        if first_day == last_day:
            self._append(utc_date(first_day.as_py() * _DAY_MS), rows)
        else:
            for day in pc.unique(days):
                self._append(utc_date(day.as_py() * _DAY_MS), rows.filter(pc.equal(days, day)))
        self.rows += rows.num_rows

    def _append(self, date: str, rows: pa.Table) -> None:
        tables = self.tables_by_date.setdefault(date, [])
        tables.append(rows)
        tail = tables[-_MERGE_TABLES:]
        if len(tail) == _MERGE_TABLES and all(table.num_rows < _SMALL_TABLE for table in tail):
            tables[-_MERGE_TABLES:] = [pa.concat_tables(tail).combine_chunks()]

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
            self.tables_by_date,
        )
        self.first, self.oldest, self.rows = None, None, 0
        self.tables_by_date = {}
        return flush

    def committed(self, flush: Flush) -> None:
        """``flush`` is durable and its offset committed: the next run starts after it."""
        self.start = flush.next
