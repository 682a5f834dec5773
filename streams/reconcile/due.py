"""Which open cases are due for a check, found without walking the case table.

A sweep used to read every record of the table to find the few open cases worth asking Offload about;
with a million cases, most of them long terminal, that walk was nearly all of a sweep's work. The index
keeps only the open cases, ordered by the time each is due, per table partition: a sweep reads the due
prefix of each owned partition, and a terminal case is not in it at all.

When a case is due is decided in one place, ``due_at``; the index itself knows only times, and the rank
of each check (``rank_of``): when the call budget is short, a check a hint set (likely news) goes before
a backoff one, and the safety check of a case a hint covers (least likely news) goes last. A check
overdue for long goes first whatever its rank, so a short budget delays every case but loses none.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator
from enum import IntEnum

from sortedcontainers import SortedList

from offload_bridge.schemas.case_state import CaseRecord, CheckSchedule
from offload_bridge.schemas.events import TERMINAL_STATUSES


def due_at(record: CaseRecord, stale_s: float) -> int | None:
    """When (unix ms) a case is next due for a check; None when never (a terminal case).

    The schedule the record carries (``reconcile.schedule`` decides it); a record written before
    schedules existed is due ``stale_s`` after its last event, rounded up so that an integer ``now``
    reaches it exactly when ``now - updatedAt >= stale_s * 1000`` does.
    """
    state = record.state
    if state.status in TERMINAL_STATUSES:
        return None
    if record.check is not None:
        return record.check.dueAt
    return state.updatedAt + math.ceil(stale_s * 1000)


class Rank(IntEnum):
    """Which due checks go first when the budget is short: the lower, the likelier the news."""

    HINT = 0  # just after what makes a case move (an answer, a creation, Offload's nextActionAt)
    BACKOFF = 1
    SAFETY = 2  # a case whose next move a hint covers: checked in case it moved unforeseen


def rank_of(check: CheckSchedule | None) -> Rank:
    """The rank of a case's next check (a record with no schedule is on the old staleness rule)."""
    if check is None:
        return Rank.BACKOFF
    if check.hinted:
        return Rank.HINT
    return Rank.SAFETY if check.covered else Rank.BACKOFF


class DueIndex:
    """Open cases by due time, per table partition.

    A partition is either held (every open case of it is in the index) or not held (nothing of it is).
    A change to a case of a partition not held is ignored: that partition is not this worker's, or its
    ``rebuild`` from the table is still to come and will see the change there.
    """

    def __init__(self, promote_after_ms: int | None = None) -> None:
        """``promote_after_ms``: a check overdue this long goes first, whatever its rank (None: never)."""
        self.promote_after_ms = promote_after_ms
        # (dueAt, caseId) sorted: the due cases of a partition are a prefix, oldest first, ties by caseId.
        self._by_partition: dict[int, SortedList[tuple[int, str]]] = {}
        # caseId -> (partition, dueAt): finds a case's entry to move or remove it.
        self._cases: dict[str, tuple[int, int]] = {}
        # The rank of the cases held whose check is not a backoff one (most are).
        self._ranks: dict[str, Rank] = {}

    def __len__(self) -> int:
        return len(self._cases)

    def __contains__(self, case_id: object) -> bool:
        return case_id in self._cases

    def partitions(self) -> set[int]:
        """The partitions held."""
        return set(self._by_partition)

    def due_time(self, case_id: str) -> int | None:
        """The due time the index holds for a case, None when it holds none."""
        entry = self._cases.get(case_id)
        return entry[1] if entry is not None else None

    def set(self, case_id: str, partition: int, due: int | None, rank: Rank = Rank.BACKOFF) -> None:
        """A case changed: it is due at ``due`` (a check of ``rank``), or never (None, a terminal case),
        from now on."""
        entry = self._cases.get(case_id)
        if entry == (partition, due):
            if due is not None and partition in self._by_partition:
                self._mark(case_id, rank)
            return  # most changes leave the due time alone (an answer noted, a stale event counted)
        if entry is not None:
            # Looked up by the partition the case was filed under, not the one it comes with now: an
            # event that a producer put in another partition than its key's moves its case.
            old_partition, old_due = entry
            self._by_partition[old_partition].remove((old_due, case_id))
            del self._cases[case_id]
            self._ranks.pop(case_id, None)
        entries = self._by_partition.get(partition)
        if due is None or entries is None:
            return
        entries.add((due, case_id))
        self._cases[case_id] = (partition, due)
        self._mark(case_id, rank)

    def _mark(self, case_id: str, rank: Rank) -> None:
        if rank is Rank.BACKOFF:
            self._ranks.pop(case_id, None)
        else:
            self._ranks[case_id] = rank

    def drop(self, partitions: Iterable[int]) -> None:
        """Stop holding these partitions (revoked): their cases leave the index."""
        for partition in partitions:
            entries = self._by_partition.pop(partition, None)
            for _, case_id in entries or ():
                del self._cases[case_id]
                self._ranks.pop(case_id, None)

    def rebuild(self, partitions: Iterable[int], cases: Iterable[tuple[str, int, int, Rank]]) -> None:
        """Hold ``partitions`` anew, with their open cases ``(caseId, partition, dueAt, rank)``.

        What the index held of these partitions is replaced; other partitions held stay as they are.
        Cases of partitions not named are ignored, so ``cases`` may come from one scan of a table that
        also holds other partitions.
        """
        wanted = set(partitions)
        self.drop(wanted)
        # Sorted once per partition, rather than one insertion at a time.
        found: dict[int, dict[str, int]] = {partition: {} for partition in wanted}
        ranks: dict[str, Rank] = {}
        for case_id, partition, due, rank in cases:
            of_partition = found.get(partition)
            if of_partition is not None:
                of_partition[case_id] = due
                if rank is not Rank.BACKOFF:
                    ranks[case_id] = rank
        for partition, of_partition in found.items():
            for case_id in of_partition.keys() & self._cases.keys():
                # Filed under another partition held (by an event found in another partition than its
                # key's): one entry per case, so a partition's drop never takes another's case.
                self.set(case_id, partition, None)
            self._by_partition[partition] = SortedList(
                (due, case_id) for case_id, due in of_partition.items()
            )
            for case_id, due in of_partition.items():
                self._cases[case_id] = (partition, due)
            self._ranks.update((case_id, ranks[case_id]) for case_id in ranks.keys() & of_partition.keys())

    def due(self, now: int, partitions: Iterable[int] | None = None) -> list[str]:
        """The cases due at ``now`` (due time <= now) in ``partitions`` (default: all held): by rank (a
        check overdue by ``promote_after_ms`` or more counts as a hint's), each rank oldest first.

        Costs a lookup per partition plus the due cases themselves: cases not due yet are not read.
        """
        chosen = self._by_partition.keys() if partitions is None else partitions
        prefixes: list[Iterator[tuple[int, str]]] = []
        for partition in chosen:
            entries = self._by_partition.get(partition)
            if entries is not None:
                # Everything below (now + 1, ""), the smallest entry due after now.
                prefixes.append(entries.irange(maximum=(now + 1, ""), inclusive=(True, False)))
        ordered = list(heapq.merge(*prefixes))
        ranks = self._ranks
        if not ranks:
            return [case_id for _, case_id in ordered]
        promoted_before = now - self.promote_after_ms if self.promote_after_ms is not None else None

        def rank(entry: tuple[int, str]) -> Rank:
            due, case_id = entry
            if promoted_before is not None and due <= promoted_before:
                return Rank.HINT
            return ranks.get(case_id, Rank.BACKOFF)

        # Stable: oldest first within each rank.
        return [case_id for _, case_id in sorted(ordered, key=rank)]
