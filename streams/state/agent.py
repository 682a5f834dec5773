"""The case-state feature: folds ``case-events`` into the case-state table and publishes each change.

One actor (concurrency 1) keeps events of a partition in order; a bad record or an unexpected error is
handled per message, so the actor never restarts and the partition always moves on.
"""

from __future__ import annotations

import logging
from typing import Any

from offload_bridge.schemas.answers import DlqHeader
from offload_bridge.streams.context import Feature, WorkerContext
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.messages import handle_each, position
from offload_bridge.streams.state import views
from offload_bridge.streams.state.fold import FoldResult, fold
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

    async def fold_one(message: Any) -> None:
        await handle(worker, counters, invalid, message)

    async def skipped(message: Any, error: Exception) -> None:
        counters.inc("failed")
        log.exception("%s[%s]@%s: folding failed, skipped", *position(message))

    @worker.app.agent(worker.case_events, name="case-state", concurrency=1)
    async def fold_case_events(stream: Any) -> None:
        await handle_each(stream, fold_one, skipped)

    views.register(worker, counters)
    worker.metrics.add(
        "case_events",
        "case-events records by what the fold did with them",
        counters.as_dict,
    )
    return Feature("state", {"caseEvents": counters})


async def handle(worker: WorkerContext, counters: Counters, invalid: Any, message: Any) -> None:
    headers: dict[str, bytes] = dict(message.headers or ())
    try:
        event = decode_event(message.key, message.value)
    except InvalidRecord as error:
        await _quarantine(counters, invalid, message, headers, str(error))
        return
    case_id = event.data.caseId
    record, outcome = fold(worker.table.get(case_id), event, headers)
    counters.inc(outcome.value)
    if outcome is FoldResult.DUPLICATE:
        return
    # A new value each time (never mutated in place), so the changelog sees every change.
    worker.table[case_id] = record
    worker.case_changes.publish(case_id, message.partition, record)  # Faust files the write there too
    await worker.case_state.send(key=case_id.encode(), value=record.state.model_dump_json().encode())


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
