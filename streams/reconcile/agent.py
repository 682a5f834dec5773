"""The reconcile feature: every OFFLOAD_RECONCILE_INTERVAL_S, a sweep (``reconcile.sweep``) over the stale
open cases of this worker's partitions, ``GET /stats/reconcile`` and the reconcile metric."""

from __future__ import annotations

import logging

from faust.web import Request, Response, View

from offload_bridge.schemas.answers import now_ms
from offload_bridge.streams.context import Feature, WorkerContext
from offload_bridge.streams.reconcile.diff import SOURCE_RECONCILER, SynthesizedEvent
from offload_bridge.streams.reconcile.sweep import Reconciler, reconcile_counts

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
        settings, worker.table, worker.offload, publish, worker.local_partitions, worker.is_ready, counters
    )

    @worker.app.timer(settings.offload_reconcile_interval_s, name="reconcile")  # type: ignore[untyped-decorator]
    async def reconcile() -> None:
        if not worker.is_ready():
            return
        try:
            await reconciler.sweep()
        except Exception:
            counters.inc("failed")
            log.exception("reconcile sweep failed")

    @worker.app.page("/stats/reconcile")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "data": counters.as_dict()})

    worker.metrics.add(
        "reconcile", "reconciler sweeps, checks and synthesized events (fixes)", counters.as_dict
    )
    return Feature("reconcile", {"reconcile": counters})
