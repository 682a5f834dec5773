"""One reconcile sweep: ask Offload about the stale open cases of this worker's partitions and publish a
synthesized event into ``case-events`` where Offload is ahead.

It never writes the table itself: the state agent folds the synthesized events like webhooks (tables
change only inside an event's context, and the fold's dedup and ordering rules stay in one place).

Which cases a sweep looks at comes from an index of the open cases by due time (``reconcile.due``), kept
in step with the table by the case changes the features publish and rebuilt from one scan of the table
after each rebalance: a sweep costs the cases due, not the size of the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.case_state import CaseRecord, CaseState
from offload_bridge.settings import Settings
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.reconcile.diff import ReconcileDecision, SynthesizedEvent, decide_reconcile
from offload_bridge.streams.reconcile.due import DueIndex, due_at
from offload_bridge.streams.reconcile.fetch import FetchKind, FetchResult, fetch_case
from offload_bridge.streams.reconcile.ratelimit import TokenBucket
from offload_bridge.streams.retry import backoff_s
from offload_bridge.streams.state.scan import open_records

log = logging.getLogger("offload_bridge.streams.reconcile")

# Consecutive throttled calls after which a sweep gives up until the next interval.
MAX_CONSECUTIVE_THROTTLES = 5

RECONCILE_COUNTS = (
    "sweeps",
    "checked",  # GET /cases/{id} answered 2xx
    "published",  # synthesized events sent to case-events
    *(
        decision.value for decision in ReconcileDecision if decision is not ReconcileDecision.AHEAD
    ),  # level, behind, ...
    "not_found",  # 404: logged, counted
    "forbidden",  # 401/403: logged, counted
    "throttled",  # 429, 5xx, timeouts and refused connections: backed off
    "invalid",  # a 2xx whose body is no case, or another 4xx
    "failed",  # an unexpected error (logged)
)


def reconcile_counts() -> Counters:
    return Counters(RECONCILE_COUNTS)


# Publishes a synthesized event of a case into case-events and waits for the broker's acknowledgement.
Publish = Callable[[str, SynthesizedEvent], Awaitable[None]]


class Reconciler:
    """Sweeps over the due cases of a case table (``get``/``items`` of CaseRecord by caseId); the I/O is
    injected. ``case_changed`` must hear of every write to the table's owned partitions, and ``rebuild``
    run once their contents changed otherwise (a rebalance's recovery)."""

    def __init__(
        self,
        settings: Settings,
        table: Any,
        api: OffloadApi,
        publish: Publish,
        owned: Callable[[], set[int]],
        ready: Callable[[], bool],
        counters: Counters,
    ) -> None:
        self.settings = settings
        self.table = table
        self.api = api
        self.publish = publish
        self.owned = owned  # the table partitions this worker owns now
        self.ready = ready  # False during recovery and rebalances
        self.counters = counters
        self.bucket = TokenBucket(settings.offload_reconcile_rps)
        self.index = DueIndex()
        # While a background rebuild scans: the changes heard meanwhile, applied again after it.
        self._heard_while_scanning: list[tuple[str, int, int | None]] | None = None
        self._rebuild_task: asyncio.Task[None] | None = None

    def due_at(self, state: CaseState) -> int | None:
        """When a case is due for a check (unix ms), None when never: the one place that decides it."""
        return due_at(state, self.settings.offload_reconcile_stale_s)

    def case_changed(self, case_id: str, partition: int, record: CaseRecord) -> None:
        """A write to the table: move the case in the index (out of it once terminal)."""
        due = self.due_at(record.state)
        self.index.set(case_id, partition, due)
        if self._heard_while_scanning is not None:
            self._heard_while_scanning.append((case_id, partition, due))

    def partitions_revoked(self, partitions: set[int]) -> None:
        """Forget these partitions: whoever gets them next changes them, unseen by ``case_changed``."""
        self.cancel_rebuild()
        self.index.drop(partitions)

    def start_rebuild(self) -> asyncio.Task[None]:
        """``rebuild`` in the background (after a rebalance): the worker serves and folds meanwhile, and
        sweeps wait until it is done. A million rocksdb records take seconds to scan."""
        self.cancel_rebuild()
        self._rebuild_task = asyncio.create_task(self.rebuild_in_background(), name="reconcile-index")
        return self._rebuild_task

    def cancel_rebuild(self) -> None:
        if self._rebuild_task is not None and not self._rebuild_task.done():
            self._rebuild_task.cancel()
        self._rebuild_task = None
        self._heard_while_scanning = None

    async def rebuild_in_background(self) -> None:
        """Index the owned partitions anew; the rocksdb scan runs in a thread (reads of rocksdb are
        thread-safe, and its snapshot iterator does not see later writes: those come as changes heard
        meanwhile, applied after the scan in the order they were made)."""
        owned = self.owned()
        self._heard_while_scanning = []
        try:
            stored = open_records(self.table, owned)
            scan = self._scan(owned, stored)
            # The memory store holds objects: read at once, no decoding.
            found = list(scan) if stored is None else await asyncio.to_thread(list, scan)
            self._hold(owned, anew=True, cases=found)
            for case_id, partition, due in self._heard_while_scanning:
                self.index.set(case_id, partition, due)
        finally:
            self._heard_while_scanning = None

    @property
    def rebuilding(self) -> bool:
        return self._rebuild_task is not None and not self._rebuild_task.done()

    def rebuild(self) -> None:
        """Index the owned partitions anew from one scan of the table; forget the others."""
        self._hold(self.owned(), anew=True)

    def _hold(self, owned: set[int], anew: bool, cases: Iterable[tuple[str, int, int]] | None = None) -> None:
        """Hold ``owned`` (anew, or only the partitions not held yet), with ``cases`` when already
        scanned; forget the partitions not owned."""
        held = self.index.partitions()
        self.index.drop(held - owned)
        partitions = owned if anew else owned - held
        if partitions:
            found = (
                cases if cases is not None else self._scan(partitions, open_records(self.table, partitions))
            )
            self.index.rebuild(partitions, found)

    def _scan(
        self, partitions: set[int], stored: Iterator[tuple[str, CaseRecord]] | None
    ) -> Iterator[tuple[str, int, int]]:
        """The open cases of ``partitions`` in the table, as (caseId, partition, dueAt); ``stored``: the
        table's rocksdb records of those partitions (``open_records``), None to walk its items."""
        count = self.settings.offload_topic_partitions
        if stored is not None:
            # rocksdb: only the open records of these partitions are decoded.
            for case_id, record in stored:
                due = self.due_at(record.state)
                if due is not None:
                    yield case_id, partition_for(case_id, count), due
            return
        for case_id, record in self.table.items():
            due = self.due_at(record.state)
            if due is None:
                continue  # terminal: never due, so never hashed either
            partition = partition_for(case_id, count)
            if partition in partitions:
                yield case_id, partition, due

    def due_cases(self, now: int) -> list[str]:
        """The owned cases due for a check at ``now``, oldest first, from the index.

        Today these are the open cases untouched for OFFLOAD_RECONCILE_STALE_S. An owned partition the
        index does not hold yet (no rebuild since it was assigned) is scanned for once, here.
        """
        if not self.ready() or self.rebuilding:
            return []  # the owned partitions are moving or being indexed: nothing to sweep yet
        owned = self.owned()
        self._hold(owned, anew=False)
        return self.index.due(now, owned)

    async def sweep(self) -> None:
        counters = self.counters
        counters.inc("sweeps")
        settings = self.settings
        throttles = 0
        for case_id in self.due_cases(now_ms()):
            if not self.ready():
                return  # a rebalance: these partitions may be someone else's now
            await self.bucket.take()
            fetched = await fetch_case(self.api, case_id)
            if fetched.kind is FetchKind.THROTTLED:
                counters.inc("throttled")
                throttles += 1
                if throttles >= MAX_CONSECUTIVE_THROTTLES:
                    log.warning("reconcile: Offload keeps refusing (%s); sweep ends early", fetched.detail)
                    return
                delay = backoff_s(
                    throttles, settings.offload_retry_base_s, settings.offload_retry_max_s,
                    fetched.retry_after_s,
                )  # fmt: skip
                log.info("reconcile: GET %s: %s; backing off %.2fs", case_id, fetched.detail, delay)
                await asyncio.sleep(delay)
                continue
            throttles = 0
            if fetched.kind is FetchKind.NOT_FOUND:
                counters.inc("not_found")
                log.warning("reconcile: case %s is unknown to Offload (%s)", case_id, fetched.detail)
            elif fetched.kind is FetchKind.FORBIDDEN:
                counters.inc("forbidden")
                log.warning("reconcile: case %s: access refused (%s)", case_id, fetched.detail)
            elif fetched.kind is FetchKind.INVALID or fetched.case is None:
                counters.inc("invalid")
                log.warning("reconcile: case %s: unusable answer (%s)", case_id, fetched.detail)
            else:
                counters.inc("checked")
                await self._apply(case_id, fetched)

    async def _apply(self, case_id: str, fetched: FetchResult) -> None:
        counters = self.counters
        record = self.table.get(case_id)  # read again: a webhook may have arrived during the call
        assert fetched.case is not None
        comparison = decide_reconcile(record.state if record is not None else None, fetched.case)
        if comparison.decision is not ReconcileDecision.AHEAD or comparison.event is None:
            counters.inc(comparison.decision.value)
            if comparison.decision in (ReconcileDecision.DIVERGED, ReconcileDecision.INCOMPLETE):
                log.warning("reconcile: %s", comparison.describe(case_id))
            return
        await self.publish(case_id, comparison.event)  # acknowledged (acks=all) before it counts
        counters.inc("published")
        log.info("reconcile: %s", comparison.describe(case_id))
