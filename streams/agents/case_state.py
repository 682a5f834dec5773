"""The case-state agent: folds ``case-events`` into the case-state table and publishes each change.

One actor (concurrency 1) keeps events of a partition in order; a bad record or an unexpected error is
handled per message, so the actor never restarts and the partition always moves on.
"""

from __future__ import annotations

import logging
from typing import Any

from offload_bridge.streams.app import StreamsApp
from offload_bridge.streams.state.fold import FoldOutcome, fold
from offload_bridge.streams.state.records import InvalidRecord, decode_event

log = logging.getLogger(__name__)


def register(streams: StreamsApp) -> Any:
    @streams.app.agent(streams.case_events, name="case-state", concurrency=1)
    async def fold_case_events(stream: Any) -> None:
        async for event in stream.events():
            try:
                await handle(streams, event.message)
            except Exception:
                streams.counters.failed += 1
                log.exception("case-events %s[%s]@%s: folding failed, skipped", *_position(event.message))

    return fold_case_events


async def handle(streams: StreamsApp, message: Any) -> None:
    headers: dict[str, bytes] = dict(message.headers or ())
    try:
        event = decode_event(message.key, message.value)
    except InvalidRecord as error:
        await _quarantine(streams, message, headers, str(error))
        return
    case_id = event.data.caseId
    record, outcome = fold(streams.table.get(case_id), event, headers)
    streams.counters.count(outcome)
    if outcome is FoldOutcome.DUPLICATE:
        return
    # A new value each time (never mutated in place), so the changelog sees every change.
    streams.table[case_id] = record
    await streams.case_state.send(key=case_id.encode(), value=record.state.model_dump_json().encode())


async def _quarantine(streams: StreamsApp, message: Any, headers: dict[str, bytes], reason: str) -> None:
    """Count, log and copy a record that is no event to case-events.invalid, with where it came from."""
    streams.counters.invalid += 1
    topic, partition, offset = _position(message)
    log.warning("case-events %s[%s]@%s is not a valid event, skipped: %s", topic, partition, offset, reason)
    context = {
        "error": reason.encode(),
        "original_topic": str(topic).encode(),
        "original_partition": str(partition).encode(),
        "original_offset": str(offset).encode(),
    }
    await streams.case_events_invalid.send(
        key=message.key, value=message.value, headers=list({**headers, **context}.items())
    )


def _position(message: Any) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset
