"""The index of open cases by due time, alone and under the reconciler, against the walk of the whole table
that it replaces."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.case_state import CaseRecord, CaseState, CheckSchedule
from offload_bridge.schemas.events import TERMINAL_STATUSES
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.reconcile.due import DueIndex, Rank, due_at, rank_of
from offload_bridge.streams.reconcile.sweep import Reconciler, reconcile_counts
from offload_bridge.streams.storage import PydanticCodec
from tests.inprocess_support import PARTITIONS, MemoryTable, PublishedEvents, settings

BACKOFF, HINT, SAFETY = Rank.BACKOFF, Rank.HINT, Rank.SAFETY


def state(case_id: str, status: str | None, updated_at: int) -> CaseState:
    return CaseState(caseId=case_id, status=status, firstSeenAt=updated_at, updatedAt=updated_at)


def held(*partitions: int) -> DueIndex:
    index = DueIndex()
    index.rebuild(partitions, [])
    return index


# --- due_at: the one rule --------------------------------------------------------------------------------


def test_an_open_case_is_due_once_stale_and_a_terminal_one_never() -> None:
    assert due_at(CaseRecord(state=state("c", "RUNNING", 1_000)), stale_s=2) == 3_000
    assert due_at(CaseRecord(state=state("c", None, 1_000)), stale_s=2) == 3_000  # no status yet: open
    assert due_at(CaseRecord(state=state("c", "COMPLETED", 1_000)), stale_s=2) is None
    assert due_at(CaseRecord(state=state("c", "FAILED", 1_000)), stale_s=2) is None


@given(
    updated_at=st.integers(0, 10**13),
    stale_s=st.floats(0, 30 * 86_400, allow_nan=False),
    after=st.integers(-(10**10), 10**10),
)
def test_due_at_agrees_with_the_staleness_rule_of_the_walk(
    updated_at: int, stale_s: float, after: int
) -> None:
    # Fractional settings too: an integer now reaches the due time exactly when the walk's test holds.
    now = updated_at + after
    due = due_at(CaseRecord(state=state("c", "RUNNING", updated_at)), stale_s)
    assert due is not None
    assert (due <= now) == (now - updated_at >= stale_s * 1000)


# --- the index alone ------------------------------------------------------------------------------------


def test_due_cases_come_oldest_first_ties_by_case_id_across_partitions() -> None:
    index = held(0, 1, 2)
    index.set("b", 1, 300)
    index.set("a", 2, 300)
    index.set("c", 0, 100)
    index.set("d", 2, 200)
    index.set("later", 0, 1_000)
    assert index.due(now=500) == ["c", "d", "a", "b"]
    assert index.due(now=300) == ["c", "d", "a", "b"]  # due at exactly now: due
    assert index.due(now=299) == ["c", "d"]
    assert index.due(now=2_000, partitions={2}) == ["d", "a"]
    assert index.due(now=2_000, partitions={5}) == []  # not held


def test_a_change_moves_a_case_and_a_terminal_one_leaves_the_index() -> None:
    index = held(0)
    index.set("c", 0, 100)
    index.set("c", 0, 900)  # a new event: due later
    assert index.due(now=500) == [] and index.due_time("c") == 900
    index.set("c", 0, 900)  # no change
    assert len(index) == 1
    index.set("c", 0, None)  # terminal
    assert "c" not in index and len(index) == 0 and index.due(now=10**9) == []
    index.set("c", 0, None)  # terminal again: nothing to remove
    assert len(index) == 0


def test_a_change_in_a_partition_not_held_is_ignored() -> None:
    index = held(0)
    index.set("elsewhere", 3, 100)
    assert "elsewhere" not in index and index.partitions() == {0}


def test_a_case_written_to_another_partition_moves_there_or_out() -> None:
    index = held(0, 1)
    index.set("c", 0, 100)
    index.set("c", 1, 200)  # an event a producer put in another partition than its key's
    assert index.due(now=500, partitions={0}) == [] and index.due(now=500, partitions={1}) == ["c"]
    index.set("c", 4, 300)  # into a partition not held: out of the index
    assert "c" not in index and index.due(now=500) == []


def test_dropping_a_partition_forgets_its_cases_and_its_later_changes() -> None:
    index = held(0, 1)
    index.set("a", 0, 100)
    index.set("b", 1, 100)
    index.drop({0})
    assert index.partitions() == {1} and "a" not in index and index.due(now=500) == ["b"]
    index.set("a", 0, 100)  # after the revocation: not ours any more
    assert "a" not in index
    index.drop({0, 7})  # dropping what is not held does nothing
    assert index.partitions() == {1}


def test_a_rebuild_replaces_the_named_partitions_and_keeps_the_others() -> None:
    index = held(0, 1)
    index.set("old", 0, 100)
    index.set("kept", 1, 100)
    scan = [("new", 0, 50, BACKOFF), ("other", 2, 10, BACKOFF), ("also", 3, 10, BACKOFF)]
    index.rebuild({0, 3}, scan)
    assert index.partitions() == {0, 1, 3}
    assert "old" not in index and "other" not in index
    assert index.due(now=500) == ["also", "new", "kept"]
    index.rebuild({1}, [])
    assert index.due(now=500) == ["also", "new"]


def test_a_rebuild_takes_a_case_filed_under_another_partition_over() -> None:
    index = held(0, 1)
    index.set("c", 1, 100)  # the hub filed it under partition 1
    index.rebuild({0}, [("c", 0, 200, BACKOFF)])  # the scan finds it in partition 0
    assert index.due(now=500, partitions={1}) == [] and index.due(now=500, partitions={0}) == ["c"]
    index.drop({1})
    assert "c" in index  # partition 1's drop does not take it


# --- the reconciler's index against the walk of the whole table -----------------------------------------

STALE_S = 1.5
# A few cases over three partitions, so that a partition often changes hands with changes of its own.
CASE_IDS = [f"case-{n}" for n in range(40) if partition_for(f"case-{n}", PARTITIONS) < 3][:9]
OWNABLE = st.frozensets(st.integers(0, 3))
STATUSES = ("CREATED", "RUNNING", "INPUT_NEEDED", "COMPLETED", "FAILED")


def walk(table: MemoryTable, owned: set[int], now: int) -> list[str]:
    """What a sweep looked at before the index: every record of the table, read at every sweep."""
    found = []
    for case_id, record in table.items():
        current = record.state
        if current.status in TERMINAL_STATUSES or now - current.updatedAt < STALE_S * 1000:
            continue
        if partition_for(case_id, PARTITIONS) in owned:
            found.append((current.updatedAt, case_id))
    return [case_id for _, case_id in sorted(found)]


@dataclass
class Write:
    """A case's new record: through an agent of this worker (told to the index) when its partition is
    owned, else by the partition's owner, arriving through the changelog (told to no one)."""

    case_id: str
    status: str
    updated_at: int


@dataclass
class Rebalance:
    """A new assignment; ``rebuild`` says whether the rebalance-complete hook ran or left it to a sweep."""

    owned: frozenset[int]
    rebuild: bool


@dataclass
class Sweep:
    now: int


Step = Write | Rebalance | Sweep

writes = st.builds(Write, st.sampled_from(CASE_IDS), st.sampled_from(STATUSES), st.integers(0, 10_000))
# Several writes between rebalances: the changes a partition sees while it is another worker's.
steps = st.one_of(
    writes, writes, writes,
    st.builds(Rebalance, OWNABLE, st.booleans()),
    st.builds(Sweep, st.integers(0, 12_000)),
)  # fmt: skip


@hypothesis_settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(start=OWNABLE, steps=st.lists(steps, max_size=60))
def test_the_due_cases_always_equal_the_walk_of_the_table(start: frozenset[int], steps: list[Step]) -> None:
    owned = set(start)
    table = MemoryTable()
    reconciler = Reconciler(
        settings(offload_reconcile_stale_s=STALE_S), table, store=MemoryTable(), api=cast(OffloadApi, None),
        publish=PublishedEvents(), owned=lambda: owned, ready=lambda: True, counters=reconcile_counts(),
    )  # fmt: skip
    reconciler.rebuild()
    for step in steps:
        if isinstance(step, Write):
            record = CaseRecord(state=state(step.case_id, step.status, step.updated_at))
            table[step.case_id] = record
            partition = partition_for(step.case_id, PARTITIONS)
            if partition in owned:
                reconciler.case_changed(step.case_id, partition, record)
        elif isinstance(step, Rebalance):
            reconciler.partitions_revoked(set(owned))
            owned.clear()
            owned.update(step.owned)
            if step.rebuild:
                reconciler.rebuild()
        else:
            assert reconciler.due_cases(step.now) == walk(table, owned, step.now)
    assert reconciler.due_cases(20_000) == walk(table, owned, 20_000)
    # Only open cases of owned partitions are held: terminal ones cost nothing.
    assert all(
        table[case_id].state.status not in TERMINAL_STATUSES for case_id in reconciler.index.due(10**9)
    )


class _GatedPartition:
    """A rocksdb partition database whose scan waits at its first row until the test opens the gate."""

    def __init__(self, rows: dict[bytes, bytes], started: threading.Event, gate: threading.Event) -> None:
        self.rows, self.started, self.gate = rows, started, gate

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        self.started.set()
        self.gate.wait(timeout=30)
        yield from self.rows.items()


class _RocksStore:
    offset_key = b"__faust\0offset__"

    def __init__(self, partitions: dict[int, _GatedPartition]) -> None:
        self.partitions = partitions

    def _db_for_partition(self, partition: int) -> _GatedPartition:
        return self.partitions[partition]


class _RocksTable:
    """What the rebuild reads of a rocksdb-backed ModelTable: its store and its codec."""

    def __init__(self, store: _RocksStore) -> None:
        self.data = store
        self.codec: PydanticCodec[CaseRecord] = PydanticCodec(CaseRecord)


async def test_changes_heard_while_a_background_rebuild_scans_win_over_what_it_read() -> None:
    codec: PydanticCodec[CaseRecord] = PydanticCodec(CaseRecord)
    started, gate = threading.Event(), threading.Event()
    partition = partition_for("c1", PARTITIONS)
    rows = {b"c1": codec.dumps(CaseRecord(state=state("c1", "INPUT_NEEDED", 1_000)))}
    table = _RocksTable(_RocksStore({partition: _GatedPartition(rows, started, gate)}))
    reconciler = Reconciler(
        settings(offload_reconcile_stale_s=STALE_S), table, store=MemoryTable(), api=cast(OffloadApi, None),
        publish=PublishedEvents(), owned=lambda: {partition}, ready=lambda: True, counters=reconcile_counts(),
    )  # fmt: skip
    task = reconciler.start_rebuild()
    await asyncio.to_thread(started.wait, 30)
    assert reconciler.rebuilding and reconciler.due_cases(10**12) == [], "no sweep while the index is built"
    # Written while the scan runs: c1 ends, c2 opens. The scan still reads c1 open.
    reconciler.case_changed("c1", partition, CaseRecord(state=state("c1", "COMPLETED", 2_000)))
    reconciler.case_changed("c2", partition, CaseRecord(state=state("c2", "INPUT_NEEDED", 3_000)))
    gate.set()
    await task
    assert not reconciler.rebuilding
    assert "c1" not in reconciler.index and reconciler.due_cases(10**12) == ["c2"]


def test_cases_a_hint_made_due_come_before_backoff_checks_each_oldest_first() -> None:
    index = held(0, 1)
    index.set("backoff-old", 0, 100)
    index.set("hinted-new", 1, 400, HINT)
    index.set("backoff-new", 1, 300)
    index.set("hinted-old", 0, 200, HINT)
    assert index.due(now=500) == ["hinted-old", "hinted-new", "backoff-old", "backoff-new"]
    index.set("hinted-new", 1, 400)  # its check moved to the backoff, same time
    assert index.due(now=500) == ["hinted-old", "backoff-old", "backoff-new", "hinted-new"]
    index.drop({0})
    index.rebuild({0}, [("hinted-old", 0, 200, HINT), ("x", 0, 50, BACKOFF)])
    assert index.due(now=500) == ["hinted-old", "x", "backoff-new", "hinted-new"]


def test_safety_checks_of_covered_cases_come_after_backoff_checks_also_after_a_rebuild() -> None:
    index = held(0, 1)
    index.set("safety-old", 0, 10, SAFETY)
    index.set("backoff", 1, 300)
    index.set("hinted", 1, 400, HINT)
    index.set("safety-new", 1, 350, SAFETY)
    assert index.due(now=500) == ["hinted", "backoff", "safety-old", "safety-new"]
    index.rebuild({0}, [("safety-old", 0, 10, SAFETY), ("b0", 0, 450, BACKOFF)])
    assert index.due(now=500) == ["hinted", "backoff", "b0", "safety-old", "safety-new"]
    index.set("safety-new", 1, 350, HINT)  # an answer was delivered: same time, now a hint's
    assert index.due(now=500) == ["safety-new", "hinted", "backoff", "b0", "safety-old"]


def test_a_check_overdue_for_long_goes_first_whatever_its_rank_so_none_is_starved() -> None:
    index = DueIndex(promote_after_ms=1_000)
    index.rebuild({0}, [])
    index.set("safety", 0, 100, SAFETY)
    index.set("backoff", 0, 200)
    index.set("hinted", 0, 1_000, HINT)
    assert index.due(now=1_050) == ["hinted", "backoff", "safety"]
    # 1,000 ms overdue: first, even before a fresh hint; then by rank again.
    assert index.due(now=1_100) == ["safety", "hinted", "backoff"]
    assert index.due(now=1_200) == ["safety", "backoff", "hinted"]  # both old: oldest first


def test_the_rank_of_a_check_comes_from_its_schedule() -> None:
    assert rank_of(None) is BACKOFF
    assert rank_of(CheckSchedule(dueAt=1, intervalMs=1)) is BACKOFF
    assert rank_of(CheckSchedule(dueAt=1, intervalMs=1, hinted=True)) is HINT
    assert rank_of(CheckSchedule(dueAt=1, intervalMs=1, covered=True)) is SAFETY
