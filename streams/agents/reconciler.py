"""The reconciler: every OFFLOAD_RECONCILE_INTERVAL_S, ask Offload about the stale open cases of this
worker's partitions and publish a synthesized event into ``case-events`` where Offload is ahead.

It never writes the table itself: the state agent folds the synthesized events like webhooks (tables
change only inside an event's context, and the fold's dedup and ordering rules stay in one place).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.web import Request, Response, View

from offload_bridge.partitioning import partition_for
from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.events import TERMINAL_STATUSES
from offload_bridge.streams.answers.policy import backoff_s
from offload_bridge.streams.app import StreamsApp
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.reconcile.counters import ReconcileCounters
from offload_bridge.streams.reconcile.diff import SOURCE_RECONCILER, Verdict, compare
from offload_bridge.streams.reconcile.fetch import Fetch, fetch_case
from offload_bridge.streams.reconcile.ratelimit import TokenBucket

log = logging.getLogger(__name__)

# Consecutive throttled calls after which a sweep gives up until the next interval.
MAX_CONSECUTIVE_THROTTLES = 5


def register(streams: StreamsApp) -> ReconcileCounters:
    settings = streams.settings
    counters = ReconcileCounters()
    bucket = TokenBucket(settings.offload_reconcile_rps)

    @streams.app.timer(settings.offload_reconcile_interval_s, name="reconcile")  # type: ignore[untyped-decorator]
    async def reconcile() -> None:
        if not streams.is_ready():
            return
        try:
            await sweep(streams, streams.offload, bucket, counters)
        except Exception:
            counters.failed += 1
            log.exception("reconcile sweep failed")

    @streams.app.page("/stats/reconcile")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "data": counters.as_dict()})

    return counters


def stale_open_cases(streams: StreamsApp, now: int) -> list[str]:
    """Open cases of this worker's active partitions untouched for OFFLOAD_RECONCILE_STALE_S, oldest
    first."""
    from offload_bridge.streams.views import local_partitions

    partitions = local_partitions(streams)
    count = streams.settings.offload_topic_partitions
    stale_ms = streams.settings.offload_reconcile_stale_s * 1000
    found: list[tuple[int, str]] = []
    for case_id, record in streams.table.items():
        state = record.state
        if state.status in TERMINAL_STATUSES or now - state.updatedAt < stale_ms:
            continue
        if partition_for(case_id, count) in partitions:
            found.append((state.updatedAt, case_id))
    return [case_id for _, case_id in sorted(found)]


async def sweep(
    streams: StreamsApp, api: OffloadApi, bucket: TokenBucket, counters: ReconcileCounters
) -> None:
    counters.sweeps += 1
    settings = streams.settings
    throttles = 0
    for case_id in stale_open_cases(streams, now_ms()):
        if not streams.is_ready():
            return  # a rebalance: these partitions may be someone else's now
        await bucket.take()
        fetched = await fetch_case(api, case_id)
        if fetched.kind is Fetch.THROTTLED:
            counters.throttled += 1
            throttles += 1
            if throttles >= MAX_CONSECUTIVE_THROTTLES:
                log.warning("reconcile: Offload keeps refusing (%s); sweep ends early", fetched.detail)
                return
            delay = backoff_s(
                throttles, settings.offload_retry_base_s, settings.offload_retry_max_s, fetched.retry_after_s
            )
            log.info("reconcile: GET %s: %s; backing off %.2fs", case_id, fetched.detail, delay)
            await asyncio.sleep(delay)
            continue
        throttles = 0
        if fetched.kind is Fetch.NOT_FOUND:
            counters.not_found += 1
            log.warning("reconcile: case %s is unknown to Offload (%s)", case_id, fetched.detail)
        elif fetched.kind is Fetch.FORBIDDEN:
            counters.forbidden += 1
            log.warning("reconcile: case %s: access refused (%s)", case_id, fetched.detail)
        elif fetched.kind is Fetch.INVALID or fetched.case is None:
            counters.invalid += 1
            log.warning("reconcile: case %s: unusable answer (%s)", case_id, fetched.detail)
        else:
            counters.checked += 1
            await _apply(streams, case_id, fetched, counters)


async def _apply(streams: StreamsApp, case_id: str, fetched: Any, counters: ReconcileCounters) -> None:
    record = streams.table.get(case_id)  # read again: a webhook may have arrived during the call
    comparison = compare(record.state if record is not None else None, fetched.case)
    if comparison.verdict is not Verdict.AHEAD or comparison.event is None:
        setattr(counters, comparison.verdict.value, getattr(counters, comparison.verdict.value) + 1)
        if comparison.verdict in (Verdict.DIVERGED, Verdict.INCOMPLETE):
            log.warning("reconcile: %s", comparison.describe(case_id))
        return
    event = comparison.event
    sent = await streams.case_events.send(
        key=case_id.encode(), value=event.body, headers=event.headers(now_ms(), SOURCE_RECONCILER)
    )
    await sent  # acknowledged (acks=all) before it counts
    counters.published += 1
    log.info("reconcile: %s", comparison.describe(case_id))
