"""``GET /cases``: a walk over this worker's partitions in (partition, caseId) order, a page at a time.

A cursor is the position (partition, caseId) up to which the walk has looked; the next page starts just
after it. Positions are ordered by themselves, not by what the table holds, so a case present in the table
for the whole walk is listed exactly once, however many cases come, go or change between pages, and a new
case shows up if its position is still ahead of the cursor. The cursor is opaque to clients (base64url of
``1:<partition>:<caseId>``), so its encoding can change under a new version number.

How a page is found depends on the store:

- rocksdb://: each partition is its own database whose keys RocksDB keeps sorted (bytewise, which for
  UTF-8 is caseId order), so a page is a seek to the cursor and a read forward. Cost: one seek plus the
  rows looked at; without ``status`` that is ``limit + 1`` rows, with it at most ``SCAN_BUDGET`` rows
  (non-matching rows are decoded too), after which the page ends early with a cursor.
- memory://: one dict for every partition in no useful order, holding standby copies and the cases of
  partitions the worker gave away in a rebalance as well (Faust drops only those it replayed from the
  changelog), so each key's partition is computed and checked. Keeping the dict sorted would mean hooking
  every write of the fold, so the cost is paid here, by the rarer listing: every page looks at every key
  of the table (two dict reads and a comparison each: about 25 ms at 50k cases) and keeps the
  ``limit + 1`` smallest positions (a partial sort, O(n log limit)). A key's partition is a murmur2 in
  Python (about 6 µs), so it is remembered per key: the first page after a start pays it for every case
  (about half a second at 50k cases), later pages only for new cases.

Either way a page may hold fewer than ``limit`` cases while more follow (rocksdb with ``status``); only a
null ``nextCursor`` says the walk is done.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.case_state import CaseRecord

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
# Rows a rocksdb page may look at before it ends early: a page filtered by status decodes every row it
# passes, about 10 µs each, so this keeps one page to some 50 ms of the worker's event loop.
SCAN_BUDGET = 5000
CURSOR_VERSION = "1"
# Longer than any cursor this API hands out (caseIds are short), short enough to reject junk unread.
MAX_CURSOR_LENGTH = 2048
_CURSOR_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
_LIMIT = re.compile(r"[0-9]{1,4}")
_PARTITION = re.compile(r"0|[1-9][0-9]{0,8}")


class InvalidQuery(ValueError):
    """A query parameter of ``GET /cases`` that cannot be used; the message says which and why."""


class Position(NamedTuple):
    """Where a walk stands. A tuple, so positions compare (partition first, then caseId) in C."""

    partition: int
    case_id: str


@dataclass(frozen=True)
class ListQuery:
    status: str | None
    limit: int
    after: Position | None  # None: from the start


@dataclass(frozen=True)
class Page:
    cases: list[bytes]  # each case's CaseState JSON
    next: Position | None  # None: the walk is done


def encode_cursor(position: Position) -> str:
    text = f"{CURSOR_VERSION}:{position.partition}:{position.case_id}"
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, partition_count: int) -> Position:
    """The position a cursor of ``encode_cursor`` stands for. Raises InvalidQuery for anything else."""
    invalid = InvalidQuery("cursor is not one this API handed out; start again without it")
    if len(cursor) > MAX_CURSOR_LENGTH or not _CURSOR_ALPHABET.fullmatch(cursor):
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise invalid from None
    version, _, rest = text.partition(":")
    partition, _, case_id = rest.partition(":")
    if version != CURSOR_VERSION or not _PARTITION.fullmatch(partition) or not case_id:
        raise invalid
    position = Position(int(partition), case_id)
    # Only the canonical spelling: base64 has several for the same bytes (the unused low bits).
    if encode_cursor(position) != cursor:
        raise invalid
    if position.partition >= partition_count:
        raise InvalidQuery(f"cursor is for a partition this topic ({partition_count} partitions) lacks")
    return position


def parse_query(query: Mapping[str, str], partition_count: int) -> ListQuery:
    """``status``, ``limit`` (1..MAX_LIST_LIMIT), ``cursor`` (empty: from the start). Raises InvalidQuery."""
    raw_limit = query.get("limit")
    limit = DEFAULT_LIST_LIMIT
    if raw_limit is not None:
        # Digits only: int() would also take " 7", "+7" and "0_7".
        if not _LIMIT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= MAX_LIST_LIMIT:
            raise InvalidQuery(f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}")
        limit = int(raw_limit)
    cursor = query.get("cursor") or None
    after = decode_cursor(cursor, partition_count) if cursor is not None else None
    return ListQuery(status=query.get("status"), limit=limit, after=after)


class CaseLister:
    """Pages of the case-state table for one worker; keeps what it learnt of keys' partitions."""

    def __init__(self, table: Any, partition_count: int) -> None:
        self.table = table
        self.partition_count = partition_count
        self._partition_of: dict[str, int] = {}

    def page(self, partitions: Collection[int], query: ListQuery) -> Page:
        store = self.table.data
        databases = _rocksdict_databases(store)
        if databases is None:
            return self._scan(partitions, query)
        rows = _sorted_rows(databases, sorted(partitions), query.after, store.offset_key)
        decode: Callable[[bytes], CaseRecord] = store._decode_value
        return _take(rows, decode, query)

    def _scan(self, partitions: Collection[int], query: ListQuery) -> Page:
        """Any store, read through the table: every key looked at, the smallest positions kept."""
        known = self._partitions_of_keys()
        after, status = query.after, query.status
        # Plain tuples in generator expressions: this runs once per case of the table for every page.
        rows = ((known[case_id], case_id, record) for case_id, record in self.table.items())
        mine = (row for row in rows if row[0] in partitions)  # the others: standby copies, or left behind
        if after is not None:
            mine = (row for row in mine if (row[0], row[1]) > after)
        if status is not None:
            mine = (row for row in mine if row[2].state.status == status)
        # (partition, caseId) is unique, so the records are never compared.
        smallest = heapq.nsmallest(query.limit + 1, mine)
        listed = smallest[: query.limit]
        more = len(smallest) > query.limit
        return Page(
            cases=[record.state.model_dump_json().encode() for _, _, record in listed],
            next=Position(listed[-1][0], listed[-1][1]) if more else None,
        )

    def _partitions_of_keys(self) -> dict[str, int]:
        """Every key's partition, computed once per key (murmur2 in Python) and remembered."""
        known = self._partition_of
        keys = 0
        for case_id in self.table:
            keys += 1
            if case_id not in known:
                known[case_id] = partition_for(case_id, self.partition_count)
        if len(known) > 2 * keys + 1024:
            # Mostly cases that left the table since: keep only the others.
            known = self._partition_of = {case_id: known[case_id] for case_id in self.table}
        return known


def _rocksdict_databases(store: Any) -> Mapping[int, Any] | None:
    """The partition databases of a rocksdict-backed Faust store, or None for any other store.

    Faust keeps them in ``Store._dbs`` (partition -> Rdict) with no public accessor; should that change,
    the listing falls back to the scan through the table, slower but just as correct.
    """
    databases = getattr(store, "_dbs", None)
    if not getattr(store, "use_rocksdict", False) or not isinstance(databases, dict):
        return None
    if not isinstance(getattr(store, "offset_key", None), bytes) or not callable(
        getattr(store, "_decode_value", None)
    ):
        return None
    return databases


def _sorted_rows(
    databases: Mapping[int, Any], partitions: list[int], after: Position | None, offset_key: bytes
) -> Iterator[tuple[Position, bytes]]:
    """Every row after ``after`` in the given partitions' databases, in position order, values raw."""
    for partition in partitions:
        if after is not None and partition < after.partition:
            continue
        # A partition's database is opened when the worker is assigned it; one not open holds nothing
        # this worker could answer for (GET /cases/{id} reads open ones only, too).
        database = databases.get(partition)
        if database is None:
            continue
        rows = database.iter()
        if after is not None and partition == after.partition:
            start = after.case_id.encode()
            rows.seek(start)  # the first key >= start
            if rows.valid() and rows.key() == start:
                rows.next()
        else:
            rows.seek_to_first()
        while rows.valid():
            key: bytes = rows.key()
            if key != offset_key:  # Faust's own bookkeeping row, not a case
                yield Position(partition, key.decode()), rows.value()
            rows.next()


def _take(
    rows: Iterator[tuple[Position, bytes]], decode: Callable[[bytes], CaseRecord], query: ListQuery
) -> Page:
    """Up to ``limit`` matching rows, and the position up to which rows were looked at if any may follow."""
    cases: list[bytes] = []
    looked_up_to: Position | None = None
    for looked, (position, raw) in enumerate(rows, start=1):
        # Decoded only when needed: to filter by status, or to be listed.
        record = decode(raw) if query.status is not None else None
        if record is None or record.state.status == query.status:
            if len(cases) == query.limit:
                return Page(cases, looked_up_to)  # one more matches: it opens the next page
            cases.append((record or decode(raw)).state.model_dump_json().encode())
        looked_up_to = position
        if looked >= SCAN_BUDGET:
            return Page(cases, looked_up_to)
    return Page(cases, None)
