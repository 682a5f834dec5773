"""The case-state feature: folds ``case-events`` into the case-state table and publishes each change.

One actor (concurrency 1) keeps events of a partition in order; a bad record or an unexpected error is
handled per message, so the actor never restarts and the partition always moves on.
"""

from __future__ import annotations

import logging
from typing import Any

from offload_bridge.streams.context import Feature, WorkerContext
from offload_bridge.streams.state import views
from offload_bridge.streams.state.counters import FoldCounters
from offload_bridge.streams.state.fold import FoldOutcome, fold
from offload_bridge.streams.state.records import InvalidRecord, decode_event
from offload_bridge.topics import CASE_EVENTS_INVALID

log = logging.getLogger(__name__)


def register(worker: WorkerContext) -> Feature:
    """The state agent, the query API (``/ready``, ``/stats``, ``/cases``) and the case_events metric."""
    counters = FoldCounters()
    invalid = worker.topic(CASE_EVENTS_INVALID)

    @worker.app.agent(worker.case_events, name="case-state", concurrency=1)
    async def fold_case_events(stream: Any) -> None:
        async for event in stream.events():
            try:
                await handle(worker, counters, invalid, event.message)
            except Exception:
                counters.failed += 1
                log.exception("case-events %s[%s]@%s: folding failed, skipped", *_position(event.message))

    views.register(worker, counters)
    worker.metrics.add(
        "case_events",
        "case-events records by what the fold did with them",
        lambda: {kind: n for kind, n in counters.as_dict().items() if kind != "folded"},
    )
    return Feature("state", {"caseEvents": counters})


async def handle(worker: WorkerContext, counters: FoldCounters, invalid: Any, message: Any) -> None:
    headers: dict[str, bytes] = dict(message.headers or ())
    try:
        event = decode_event(message.key, message.value)
    except InvalidRecord as error:
        await _quarantine(counters, invalid, message, headers, str(error))
        return
    case_id = event.data.caseId
    record, outcome = fold(worker.table.get(case_id), event, headers)
    counters.count(outcome)
    if outcome is FoldOutcome.DUPLICATE:
        return
    # A new value each time (never mutated in place), so the changelog sees every change.
    worker.table[case_id] = record
    await worker.case_state.send(key=case_id.encode(), value=record.state.model_dump_json().encode())


async def _quarantine(
    counters: FoldCounters, invalid: Any, message: Any, headers: dict[str, bytes], reason: str
) -> None:
    """Count, log and copy a record that is no event to case-events.invalid, with where it came from."""
    counters.invalid += 1
    topic, partition, offset = _position(message)
    log.warning("case-events %s[%s]@%s is not a valid event, skipped: %s", topic, partition, offset, reason)
    context = {
        "error": reason.encode(),
        "original_topic": str(topic).encode(),
        "original_partition": str(partition).encode(),
        "original_offset": str(offset).encode(),
    }
    await invalid.send(key=message.key, value=message.value, headers=list({**headers, **context}.items()))


def _position(message: Any) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset
