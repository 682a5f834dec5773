"""The reconcile feature: every OFFLOAD_RECONCILE_INTERVAL_S, the checks of this worker's due cases
start (``reconcile.sweep``); ``GET /stats/reconcile`` and the reconcile metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from faust.web import Request, Response, View
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from offload_bridge.schemas.answers import now_ms
from offload_bridge.streams.context import Feature, WorkerContext
from offload_bridge.streams.messages import handle_each
from offload_bridge.streams.reconcile.diff import SOURCE_RECONCILER, SynthesizedEvent
from offload_bridge.streams.reconcile.sweep import Reconciler, reconcile_counts
from offload_bridge.streams.reconcile.watch import CaseWatching, watch_counts
from offload_bridge.topics import CASE_WATCH, CASE_WATCH_DLQ

log = logging.getLogger("offload_bridge.streams.reconcile")


def register(worker: WorkerContext) -> Feature:
    settings = worker.settings
    counters = reconcile_counts()

    async def publish(case_id: str, event: SynthesizedEvent) -> None:
        sent = await worker.case_events.send(
            key=case_id.encode(), value=event.body, headers=event.headers(now_ms(), SOURCE_RECONCILER)
        )
        await sent

    reconciler = Reconciler(
        settings, worker.table, worker.cases, worker.offload, publish, worker.local_partitions,
        worker.is_ready, counters,
    )  # fmt: skip
    # The index of due cases follows every write of the agents, and is rebuilt from the table whenever
    # a rebalance changed which partitions are here and what they hold.
    worker.case_changes.subscribe(reconciler.case_changed)
    source = worker.case_events.get_topic_name()

    @worker.app.on_partitions_revoked.connect
    async def forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        revoked: set[Any] = args[0]  # the TPs this worker gives up
        reconciler.partitions_revoked({tp.partition for tp in revoked if tp.topic == source})
        # Schedule moves are held without an event to acknowledge, so Faust does not wait for them:
        # written now, while these partitions are still ours to write.
        await worker.cases.drain()

    @worker.app.on_before_shutdown.connect
    async def stop_checks(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await reconciler.close()

    @worker.app.on_rebalance_complete.connect
    async def index_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Sent once the tables are recovered, before the stream partitions resume. The scan runs in the
        # background (seconds for a million rocksdb records), so readiness does not wait for it; the
        # agents' writes meanwhile reach the index as changes.
        reconciler.start_rebuild().add_done_callback(log_indexed)

    def log_indexed(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            # Never fail the worker for it: the next sweep scans for the partitions not indexed.
            log.error("reconcile: indexing the owned partitions failed", exc_info=task.exception())
            return
        index = reconciler.index
        log.info(
            "reconcile: indexed %d open case(s) of partitions %s", len(index), sorted(index.partitions())
        )

    @worker.app.timer(settings.offload_reconcile_interval_s, name="reconcile")  # type: ignore[untyped-decorator]
    async def reconcile() -> None:
        if not worker.is_ready():
            return
        try:
            # Returns once the due checks have started; they finish in the background.
            await reconciler.dispatch_due()
        except Exception:
            counters.inc("failed")
            log.exception("reconcile: starting the due checks failed")

    @worker.app.page("/stats/reconcile")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            data = {**counters.as_dict(), **gauges(), "gets": reconciler.gets.as_dict()}
            return self.json({"ok": True, "data": {**data, "caseWatch": watching.counters.as_dict()}})

    def gauges() -> dict[str, int | float]:
        gate = reconciler.gate
        return {
            "scheduled": len(reconciler.index),
            "due": reconciler.cases_due(now_ms()),
            "inFlight": gate.in_flight,
            "budgetLeft": gate.budget_left(),
            "pausedS": round(gate.paused_s, 3),
        }

    def families() -> Iterator[Metric]:
        gets = CounterMetricFamily(
            "offload_worker_reconcile_gets",
            "GET /cases/{id} calls by what Offload answered",
            labels=["outcome"],
        )
        for outcome, value in reconciler.gets.as_dict().items():
            gets.add_metric([outcome], value)
        yield gets
        yield from reconciler.repairs.families()
        now = gauges()
        for name, key, text in (
            ("cases_scheduled", "scheduled", "open cases of this worker's partitions with a next check"),
            ("cases_due", "due", "cases whose check is due and not started (waiting for the gate)"),
            ("in_flight", "inFlight", "GET /cases/{id} calls in flight"),
            ("budget_left", "budgetLeft", "calls that may still start in the current budget window"),
            ("paused_seconds", "pausedS", "how long all calls still wait after Offload pushed back"),
        ):
            yield GaugeMetricFamily(f"offload_worker_reconcile_{name}", text, value=now[key])

    watching = CaseWatching(reconciler, worker.topic(CASE_WATCH_DLQ), watch_counts())

    @worker.app.agent(worker.topic(CASE_WATCH), name="case-watch", concurrency=1)
    async def watch_cases(stream: Any) -> None:
        await handle_each(stream, watching.on_watch, watching.failed)

    worker.metrics.add(
        "reconcile", "reconciler sweeps, checks and synthesized events (fixes)", counters.as_dict
    )
    worker.metrics.add("case_watch", "case-watch requests by what became of them", watching.counters.as_dict)
    worker.metrics.add_families(families)
    return Feature("reconcile", {"reconcile": counters, "caseWatch": watching.counters})
