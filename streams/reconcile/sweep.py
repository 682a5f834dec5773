"""The reconciler: ask Offload about the open cases of this worker's partitions when each is due, and
publish a synthesized event into ``case-events`` where Offload is ahead.

When a case is due is kept with the case in the table (``reconcile.schedule`` decides it; the fold,
the answer feature and the checks here move it). Which cases are due comes from an index of the open
cases by due time (``reconcile.due``), kept in step with the table by the case changes the features
publish and rebuilt from one scan of the table after each rebalance: looking for due cases costs the
cases due, not the size of the table. Calls run concurrently through a ``CallGate`` (in flight, rate,
budget per window, a pause for the whole worker when Offload pushes back).

It never writes a case's state itself: the state agent folds the synthesized events like webhooks
(tables change only inside an event's context, and the fold's dedup and ordering rules stay in one
place). It writes only the case's schedule, through the fold's writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.case_state import CaseRecord, CheckSchedule
from offload_bridge.settings import Settings
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.reconcile.diff import ReconcileDecision, SynthesizedEvent, decide_reconcile
from offload_bridge.streams.reconcile.due import DueIndex, Rank, due_at, rank_of
from offload_bridge.streams.reconcile.fetch import FetchKind, FetchResult, fetch_case
from offload_bridge.streams.reconcile.gate import CallGate
from offload_bridge.streams.reconcile.repairs import RepairLatency
from offload_bridge.streams.reconcile.schedule import SchedulePolicy, offload_waits_for_answer
from offload_bridge.streams.retry import backoff_s
from offload_bridge.streams.state.scan import open_records
from offload_bridge.streams.state.store import CaseStore

log = logging.getLogger("offload_bridge.streams.reconcile")

RECONCILE_COUNTS = (
    "sweeps",  # looks at the due cases (every OFFLOAD_RECONCILE_INTERVAL_S)
    "checked",  # GET /cases/{id} answered 2xx
    "published",  # synthesized events sent to case-events
    *(
        decision.value for decision in ReconcileDecision if decision is not ReconcileDecision.AHEAD
    ),  # level, behind, ...
    "not_found",  # 404: logged, counted
    "forbidden",  # 401/403: logged, counted
    "throttled",  # 429, 5xx, timeouts and refused connections: the worker's calls pause
    "invalid",  # a 2xx whose body is no case, or another 4xx
    "failed",  # an unexpected error (logged)
)

# GETs by what Offload answered, for the gets metric.
GET_OUTCOMES = tuple(kind.value for kind in FetchKind)


def reconcile_counts() -> Counters:
    return Counters(RECONCILE_COUNTS)


# Publishes a synthesized event of a case into case-events and waits for the broker's acknowledgement.
Publish = Callable[[str, SynthesizedEvent], Awaitable[None]]


class Reconciler:
    """Checks the due cases of a case table; the I/O is injected. ``table``: the Faust table (``items``
    and its rocksdb store, for the scans); ``store``: reads and schedule writes through the fold's writer.
    ``case_changed`` must hear of every write to the table's owned partitions, and a rebuild run once
    their contents changed otherwise (a rebalance's recovery)."""

    def __init__(
        self,
        settings: Settings,
        table: Any,
        store: CaseStore,
        api: OffloadApi,
        publish: Publish,
        owned: Callable[[], set[int]],
        ready: Callable[[], bool],
        counters: Counters,
    ) -> None:
        self.settings = settings
        self.table = table
        self.store = store
        self.api = api
        self.publish = publish
        self.owned = owned  # the table partitions this worker owns now
        self.ready = ready  # False during recovery and rebalances
        self.counters = counters
        self.gets = Counters(GET_OUTCOMES)
        self.repairs = RepairLatency()
        self.policy = SchedulePolicy.from_settings(settings)
        self.gate = CallGate(
            settings.offload_reconcile_rps,
            settings.offload_reconcile_concurrency,
            settings.offload_reconcile_budget_calls,
            settings.offload_reconcile_budget_window_s,
        )
        # A check overdue by the schedule's longest wait goes first whatever its rank: none is starved.
        self.index = DueIndex(promote_after_ms=max(self.policy.max_ms, self.policy.safety_ms))
        self._in_flight: dict[str, asyncio.Task[FetchKind]] = {}
        self._throttles = 0  # consecutive pushbacks, for the worker's pause
        # While a background rebuild scans: the changes heard meanwhile, applied again after it.
        self._heard_while_scanning: list[tuple[str, int, int | None, Rank]] | None = None
        self._rebuild_task: asyncio.Task[None] | None = None

    def due_at(self, record: CaseRecord) -> int | None:
        """When a case is due for a check (unix ms), None when never."""
        return due_at(record, self.settings.offload_reconcile_stale_s)

    def case_changed(self, case_id: str, partition: int, record: CaseRecord) -> None:
        """A write to the table: move the case in the index (out of it once terminal)."""
        due, rank = self.due_at(record), rank_of(record.check)
        self.index.set(case_id, partition, due, rank)
        if self._heard_while_scanning is not None:
            self._heard_while_scanning.append((case_id, partition, due, rank))

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
            for case_id, partition, due, rank in self._heard_while_scanning:
                self.index.set(case_id, partition, due, rank)
        finally:
            self._heard_while_scanning = None

    @property
    def rebuilding(self) -> bool:
        return self._rebuild_task is not None and not self._rebuild_task.done()

    def rebuild(self) -> None:
        """Index the owned partitions anew from one scan of the table; forget the others."""
        self._hold(self.owned(), anew=True)

    def _hold(
        self, owned: set[int], anew: bool, cases: Iterable[tuple[str, int, int, Rank]] | None = None
    ) -> None:
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
    ) -> Iterator[tuple[str, int, int, Rank]]:
        """The open cases of ``partitions`` in the table, as (caseId, partition, dueAt, rank);
        ``stored``: the table's rocksdb records of those partitions (``open_records``), None to walk its
        items."""
        count = self.settings.offload_topic_partitions
        if stored is not None:
            # rocksdb: only the open records of these partitions are decoded.
            for case_id, record in stored:
                due = self.due_at(record)
                if due is not None:
                    yield case_id, partition_for(case_id, count), due, rank_of(record.check)
            return
        for case_id, record in self.table.items():
            due = self.due_at(record)
            if due is None:
                continue  # terminal: never due, so never hashed either
            partition = partition_for(case_id, count)
            if partition in partitions:
                yield case_id, partition, due, rank_of(record.check)

    def due_cases(self, now: int) -> list[str]:
        """The owned cases due for a check at ``now``, oldest first, from the index.

        An owned partition the index does not hold yet (no rebuild since it was assigned) is scanned for
        once, here.
        """
        if not self.ready() or self.rebuilding:
            return []  # the owned partitions are moving or being indexed: nothing to sweep yet
        owned = self.owned()
        self._hold(owned, anew=False)
        return self.index.due(now, owned)

    def cases_due(self, now: int) -> int:
        """How many owned cases are due and not being checked (for the metric)."""
        return len(self.index.due(now, self.owned())) if self.ready() else 0

    async def sweep(self) -> None:
        """Start a check of every due case, and wait until those checks are done (tests, the CLI)."""
        await self.dispatch_due()
        await self.idle()

    async def close(self) -> None:
        """Stop the checks in flight (the worker stops): a check cut short changed nothing it had not
        written yet, and the case is still due wherever its partition goes."""
        self.cancel_rebuild()
        checks = list(self._in_flight.values())
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait for the checks in flight."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def dispatch_due(self) -> None:
        """Start a check of each due case, oldest first, as fast as the gate admits them; returns once
        the last one started (the checks go on in the background)."""
        self.counters.inc("sweeps")
        for case_id in self.due_cases(now_ms()):
            if case_id in self._in_flight:
                continue
            await self.gate.acquire()
            # The wait may have been long: the case may be someone else's now, or a webhook moved it.
            due = self.index.due_time(case_id)
            if not self.ready() or due is None or due > now_ms() or case_id in self._in_flight:
                self.gate.release()
                if not self.ready():
                    return
                continue
            self._in_flight[case_id] = asyncio.create_task(
                self._admitted_check(case_id), name="reconcile-check"
            )

    async def check_now(self, case_id: str) -> FetchKind:
        """Check one case at once (a tracked case), through the same gate; what Offload answered.
        THROTTLED means it was not checked: ask again later."""
        await self.gate.acquire()
        return await self._admitted_check(case_id)

    async def _admitted_check(self, case_id: str) -> FetchKind:
        try:
            return await self._check(case_id)
        except Exception:
            self.counters.inc("failed")
            log.exception("reconcile: checking case %s failed", case_id)
            return FetchKind.INVALID
        finally:
            self.gate.release()
            self._in_flight.pop(case_id, None)

    async def _check(self, case_id: str) -> FetchKind:
        fetched = await fetch_case(self.api, case_id)
        self.gets.inc(fetched.kind.value)
        counters = self.counters
        if fetched.kind is FetchKind.THROTTLED:
            counters.inc("throttled")
            self._pushed_back(case_id, fetched)
            return fetched.kind  # still due: checked once the worker's pause is over
        self._throttles = 0
        at = now_ms()
        record = self.store.get(case_id)  # read now: a webhook may have arrived during the call
        check = record.check if record is not None else None
        if fetched.kind is not FetchKind.OK or fetched.case is None:
            if fetched.kind is FetchKind.NOT_FOUND:
                counters.inc("not_found")
                log.warning("reconcile: case %s is unknown to Offload (%s)", case_id, fetched.detail)
            elif fetched.kind is FetchKind.FORBIDDEN:
                counters.inc("forbidden")
                log.warning("reconcile: case %s: access refused: %s", case_id, fetched.describe())
            else:
                counters.inc("invalid")
                log.warning("reconcile: case %s: unusable answer (%s)", case_id, fetched.detail)
            self._reschedule(case_id, record, self.policy.after_failed_check(case_id, check, at))
            return fetched.kind
        counters.inc("checked")
        offload = fetched.case
        # Moved first, so that the event published below folds against a record that knows Offload's
        # nextActionAt (the fold's reset keeps it).
        waiting = offload_waits_for_answer(offload, record.state if record is not None else None)
        self._reschedule(
            case_id, record, self.policy.after_check(case_id, check, at, offload.scheduled_action_at, waiting)
        )
        await self._apply(case_id, record, fetched)
        return fetched.kind

    def _pushed_back(self, case_id: str, fetched: FetchResult) -> None:
        """Offload refused or failed: every call of the worker waits, longer each time in a row."""
        self._throttles += 1
        settings = self.settings
        delay = backoff_s(
            self._throttles,
            settings.offload_retry_base_s,
            settings.offload_retry_max_s,
            fetched.retry_after_s,
        )
        self.gate.pause(delay)
        log.info("reconcile: GET %s: %s; all calls wait %.2fs", case_id, fetched.detail, delay)

    def _reschedule(self, case_id: str, record: CaseRecord | None, check: CheckSchedule) -> None:
        """Move the case's next check, in the table and in the index at once (so the next look for due
        cases does not take it again before the write is in). Only while its partition is ours: a
        partition given away meanwhile belongs to another writer."""
        partition = partition_for(case_id, self.settings.offload_topic_partitions)
        if record is None or not self.ready() or partition not in self.owned():
            return
        due = self.due_at(record.model_copy(update={"check": check}))
        self.store.reschedule(case_id, check if due is not None else None)
        self.index.set(case_id, partition, due, rank_of(check))

    async def _apply(self, case_id: str, record: CaseRecord | None, fetched: FetchResult) -> None:
        counters = self.counters
        assert fetched.case is not None
        comparison = decide_reconcile(record.state if record is not None else None, fetched.case)
        if comparison.decision is not ReconcileDecision.AHEAD or comparison.event is None:
            counters.inc(comparison.decision.value)
            if comparison.decision in (ReconcileDecision.DIVERGED, ReconcileDecision.INCOMPLETE):
                log.warning("reconcile: %s", comparison.describe(case_id))
            return
        await self.publish(case_id, comparison.event)  # acknowledged (acks=all) before it counts
        counters.inc("published")
        # How long we were behind: from Offload's update to the moment its event is on the broker.
        self.repairs.observe(max(0, now_ms() - fetched.case.updatedAt) / 1000)
        log.info("reconcile: %s", comparison.describe(case_id))
