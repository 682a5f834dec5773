"""The case-state feature: folds ``case-events`` into the case-state table and publishes each change.

One actor (concurrency 1) keeps events of a partition in order; a bad record or an unexpected error is
handled per message, so the actor never restarts and the partition always moves on. The actor
acknowledges nothing itself: ``StateWriter`` writes each batch's changes and then acknowledges its
events (``batch``).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from offload_bridge.schemas.answers import DlqHeader
from offload_bridge.schemas.events import TERMINAL_STATUSES
from offload_bridge.streams.context import Feature, WorkerContext
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.messages import position
from offload_bridge.streams.reconcile.schedule import SchedulePolicy, state_waits_for_answer
from offload_bridge.streams.state import views
from offload_bridge.streams.state.batch import StateWriter
from offload_bridge.streams.state.fold import FoldResult, fold, received_at
from offload_bridge.streams.state.records import InvalidRecord, decode_event
from offload_bridge.topics import CASE_EVENTS_INVALID

log = logging.getLogger(__name__)

FOLD_COUNTS = (
    *(outcome.value for outcome in FoldResult),  # applied, stale, ignored, duplicate
    "invalid",  # not a valid event: logged, copied to case-events.invalid, skipped
    "failed",  # an unexpected error while folding: logged, skipped
)


def fold_counts() -> Counters:
    return Counters(FOLD_COUNTS)


def register(worker: WorkerContext) -> Feature:
    """The state agent, the query API (``/ready``, ``/stats``, ``/cases``) and the case_events metric."""
    counters = fold_counts()
    invalid = worker.topic(CASE_EVENTS_INVALID)
    writer = worker.cases
    schedule = SchedulePolicy.from_settings(worker.settings)

    @worker.app.agent(worker.case_events, name="case-state", concurrency=1)
    async def fold_case_events(stream: Any) -> None:
        manual = stream.noack()
        async for event in manual.events():
            message = event.message
            try:
                await handle(writer, counters, invalid, message, schedule)
            except Exception:
                counters.inc("failed")
                log.exception("%s[%s]@%s: folding failed, skipped", *position(message))
            # Every event, folded or not, is acknowledged in order with its batch.
            await writer.hold(manual, event)

    @worker.app.on_before_shutdown.connect
    async def write_what_is_held(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await writer.close()

    views.register(worker, counters)
    worker.metrics.add(
        "case_events",
        "case-events records by what the fold did with them",
        counters.as_dict,
    )

    # What GET /ready says, for alerting: a worker that answers scrapes (its counters are local) can still
    # be stuck recovering its tables or rebalancing, serving no query for its partitions.
    def readiness() -> list[Metric]:
        text = "1 while GET /ready answers 200: the tables are recovered and no rebalance is under way"
        return [GaugeMetricFamily("offload_worker_ready", text, value=1 if worker.is_ready() else 0)]

    worker.metrics.add_families(readiness)
    return Feature("state", {"caseEvents": counters})


async def handle(
    writer: StateWriter, counters: Counters, invalid: Any, message: Any, schedule: SchedulePolicy
) -> None:
    headers: dict[str, bytes] = dict(message.headers or ())
    try:
        event = decode_event(message.key, message.value)
    except InvalidRecord as error:
        await _quarantine(counters, invalid, message, headers, str(error))
        return
    case_id = event.data.caseId
    record, outcome = fold(writer.get(case_id), event, headers)
    counters.inc(outcome.value)
    if outcome is FoldResult.DUPLICATE:
        return
    # Any new event of the case starts its reconcile backoff again (from the event's received_at, so a
    # replay after a crash gives the same schedule).
    terminal = record.state.status in TERMINAL_STATUSES
    at = received_at(headers, event)
    waiting = state_waits_for_answer(record.state)  # no backoff checks until it is answered
    check = schedule.after_event(case_id, record.check, event.event_type, at, terminal, waiting)
    record = record.model_copy(update={"check": check})
    # A new value each time (never mutated in place): a held batch may still be writing the old one.
    writer.put(case_id, message.partition, record)


async def _quarantine(
    counters: Counters, invalid: Any, message: Any, headers: dict[str, bytes], reason: str
) -> None:
    """Count, log and copy a record that is no event to case-events.invalid, with where it came from."""
    counters.inc("invalid")
    topic, partition, offset = position(message)
    log.warning("case-events %s[%s]@%s is not a valid event, skipped: %s", topic, partition, offset, reason)
    # Where it came from and why, under the names the dead-letter queues use.
    context = {
        DlqHeader.ERROR.value: reason.encode(),
        DlqHeader.ORIGINAL_TOPIC.value: str(topic).encode(),
        DlqHeader.ORIGINAL_PARTITION.value: str(partition).encode(),
        DlqHeader.ORIGINAL_OFFSET.value: str(offset).encode(),
    }
    await invalid.send(key=message.key, value=message.value, headers=list({**headers, **context}.items()))
