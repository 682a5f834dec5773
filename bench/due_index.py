"""Benchmark of a reconcile sweep's lookup of the cases due, against the walk of the whole table it
replaced, measured in the same run. In-process: no broker, no Offload.

1. A case-state table (a dict of CaseRecord, as the memory store holds them) of RECORDS cases, OPEN of
   them open and due (updatedAt long ago), the others terminal, over the worker's partitions.
2. Anchor: the walk every sweep used to do (every record read, oldest first), CPU time per sweep.
3. The index: the one scan a rebalance costs (``Reconciler.rebuild``), then a sweep's lookup
   (``Reconciler.due_cases``), CPU time per sweep, with every open case due and with 1% of them; and
   the cost of keeping the index in step with one case change (what the state agent's publish adds to
   a fold).

Run: ``.venv/bin/python -m bench.due_index`` (about 2 GB of memory for a million records).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import TypeVar, cast

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.case_state import CaseRecord, CaseState
from offload_bridge.schemas.events import TERMINAL_STATUSES
from offload_bridge.settings import Settings
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.reconcile.diff import SynthesizedEvent
from offload_bridge.streams.reconcile.sweep import Reconciler, reconcile_counts
from offload_bridge.streams.state.store import CaseStore

T = TypeVar("T")

STALE_S = 600.0
NOW = 10**12


def make_table(records: int, open_cases: int) -> dict[str, CaseRecord]:
    """``open_cases`` open and due among ``records``, spread evenly, each with its own updatedAt."""
    every = max(1, records // max(1, open_cases))
    table: dict[str, CaseRecord] = {}
    opened = 0
    for number in range(records):
        case_id = f"case-{number:08d}"
        is_open = number % every == 0 and opened < open_cases
        opened += is_open
        status = "INPUT_NEEDED" if is_open else ("COMPLETED", "FAILED")[number % 2]
        updated_at = NOW - 86_400_000 + number
        state = CaseState(caseId=case_id, status=status, firstSeenAt=updated_at, updatedAt=updated_at)
        event_id = f"evt_{case_id}_case_completed_{updated_at}"
        table[case_id] = CaseRecord(state=state, recentEventIds=[event_id])
    return table


def walk(table: dict[str, CaseRecord], partitions: set[int], count: int, now: int) -> list[str]:
    """The lookup every sweep did before the index (``Reconciler.stale_open_cases``), as it was."""
    stale_ms = STALE_S * 1000
    found: list[tuple[int, str]] = []
    for case_id, record in table.items():
        state = record.state
        if state.status in TERMINAL_STATUSES or now - state.updatedAt < stale_ms:
            continue
        if partition_for(case_id, count) in partitions:
            found.append((state.updatedAt, case_id))
    return [case_id for _, case_id in sorted(found)]


def cpu_s(action: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median CPU time of ``action`` over ``repeat`` runs (at least one), and its last result."""
    times = []
    for _ in range(repeat - 1):
        started = time.process_time()
        action()
        times.append(time.process_time() - started)
    started = time.process_time()
    result = action()
    times.append(time.process_time() - started)
    return statistics.median(times), result


async def publish_nothing(case_id: str, event: SynthesizedEvent) -> None:
    """The sweep's publish; never called here (only the lookup is measured)."""


def run(args: argparse.Namespace) -> int:
    settings = Settings(offload_topic_partitions=args.partitions, offload_reconcile_stale_s=STALE_S)
    owned = set(range(args.partitions))
    started = time.perf_counter()
    table = make_table(args.records, args.open)
    print(f"table: {args.records:,} records, {args.open:,} open and due, {args.partitions} partitions "
          f"(built in {time.perf_counter() - started:.1f}s)", flush=True)  # fmt: skip

    walk_s, walked = cpu_s(lambda: walk(table, owned, args.partitions, NOW), args.walk_repeat)
    print(f"anchor (walk of the whole table): {walk_s * 1000:,.1f} ms CPU per sweep", flush=True)

    reconciler = Reconciler(
        settings, table, cast(CaseStore, table), cast(OffloadApi, None), publish_nothing,
        owned=lambda: owned, ready=lambda: True,
        counters=reconcile_counts(),
    )  # fmt: skip
    rebuild_s, _ = cpu_s(reconciler.rebuild, 1)
    lookup_s, found = cpu_s(lambda: reconciler.due_cases(NOW), args.lookup_repeat)
    assert found == walked, "the index and the walk disagree"
    # A quieter sweep: the oldest 1% of the records' time range is due, the other open cases not yet.
    quiet_now = NOW - 86_400_000 + int(STALE_S * 1000) + args.records // 100
    quiet_s, quiet = cpu_s(lambda: reconciler.due_cases(quiet_now), args.lookup_repeat)
    assert quiet == walk(table, owned, args.partitions, quiet_now), "the index and the walk disagree"

    # One case change as the state agent tells it: an open case moves (a new event), then back.
    changed: list[tuple[str, int, CaseRecord]] = []
    for case_id in found[: args.changes]:
        record = table[case_id]
        moved = record.model_copy(update={"state": record.state.model_copy(update={"updatedAt": NOW})})
        changed.append((case_id, partition_for(case_id, args.partitions), moved))

    def apply_changes() -> None:
        for case_id, partition, record in changed:
            reconciler.case_changed(case_id, partition, record)

    change_s, _ = cpu_s(apply_changes, 1)
    per_change_us = change_s / max(1, len(changed)) * 1e6

    print()
    print(f"sweep lookup, index   {lookup_s * 1000:>10,.3f} ms CPU  ({len(found):,} due cases)")
    print(f"sweep lookup, index   {quiet_s * 1000:>10,.3f} ms CPU  ({len(quiet):,} due cases)")
    print(f"sweep lookup, walk    {walk_s * 1000:>10,.3f} ms CPU  (anchor, median of {args.walk_repeat})")
    print(f"walk / index          {walk_s / lookup_s:>10,.0f}x  (every open case due)")
    print(f"index rebuild         {rebuild_s * 1000:>10,.1f} ms CPU  (one scan, once per rebalance)")
    print(f"index upkeep          {per_change_us:>10,.2f} us CPU per case change ({len(changed):,} changes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--open", type=int, default=10_000, help="open cases, all due")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--walk-repeat", type=int, default=3)
    parser.add_argument("--lookup-repeat", type=int, default=21)
    parser.add_argument("--changes", type=int, default=10_000)
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
