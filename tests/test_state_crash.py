"""SIGKILLs while a backlog folds, at and between the fold's batch boundaries: afterwards the table, the
``case-state`` topic and the table's changelog each hold exactly the fold of ``case-events``.

The worker writes the fold's changes per batch (``streams.state.batch``): case-state, then the changelog,
then the local store, then it acknowledges the events. Tiny batches (7 events, 5 ms) put hundreds of
boundaries in the backlog, and each kill lands wherever the worker happens to be: folding, waiting
for an acknowledgement, between the two topics. Whatever the kill hits, the restarted worker must end
where the pure fold of every event ends, with the rocksdb store (kept across restarts) and with the
memory store (rebuilt from the changelog).

The batch writes rocksdb:// partitions through Faust's private ``Store._db_for_partition`` and
``_key_index`` (``streams.storage.write_local``): checked with faust-streaming 0.15 and rocksdict 0.3, the
minor releases pyproject.toml bounds them to.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from offload_bridge.kafka.reading import read_topic
from offload_bridge.schemas.case_state import CaseRecord
from offload_bridge.schemas.events import parse_event
from offload_bridge.settings import Settings
from offload_bridge.streams.state.fold import fold
from offload_bridge.topics import CASE_STATE, topic_name
from tests.streams_support import Worker, event_body, publish_webhooks

CASES = 120
EVENTS_PER_CASE = 12
KILLS = 3
# Events a worker folds (by its own counters) before it is killed: a fraction of the backlog, so every
# kill finds work under way.
FOLDED_BEFORE_KILL = 250


def _events(seed: int) -> list[tuple[bytes, int]]:
    """(webhook body, received_at) per event: questions, a terminal event, duplicates and late arrivals."""
    rng = random.Random(seed)
    per_case: list[list[tuple[bytes, int]]] = []
    for n in range(CASES):
        case_id = f"crash-{seed}-{n}"
        bodies: list[tuple[bytes, int]] = []
        for step in range(EVENTS_PER_CASE - 3):
            at = 1_000_000 + step * 1_000 + rng.randrange(500)
            body = event_body(case_id, "case.input_needed", at, "INPUT_NEEDED",
                              inputRequest=f"Q{step}?", inputRequestId=f"ir-{n}-{step}")  # fmt: skip
            bodies.append((body, at + 7))
        end = 1_000_000 + EVENTS_PER_CASE * 1_000
        terminal = rng.choice([("case.completed", "COMPLETED"), ("case.failed", "FAILED")])
        bodies.append((event_body(case_id, terminal[0], end, terminal[1], resultStatus="done"), end + 7))
        bodies.append(bodies[rng.randrange(len(bodies))])  # a duplicate delivery
        late = 1_000_000 + rng.randrange(EVENTS_PER_CASE) * 1_000 + 1
        bodies.append((event_body(case_id, "case.in_progress", late, "IN_PROGRESS"), late + 7))  # stale
        per_case.append(bodies)
    # Interleave the cases as a live stream would; each case keeps its own order.
    stream: list[tuple[bytes, int]] = []
    while any(per_case):
        bodies = rng.choice([b for b in per_case if b])
        stream.append(bodies.pop(0))
    return stream


def _expected(events: list[tuple[bytes, int]]) -> dict[str, CaseRecord]:
    """The pure fold of the events in their order (all events of a case share one partition)."""
    table: dict[str, CaseRecord] = {}
    for body, received_at in events:
        event = parse_event(body)
        case_id = event.data.caseId
        record, _ = fold(table.get(case_id), event, {"received_at": str(received_at).encode()})
        table[case_id] = record
    return table


def _latest(settings: Settings, topic: str) -> dict[str, bytes]:
    latest: dict[str, bytes] = {}
    for record in read_topic(settings, topic):
        latest[record.key.decode()] = record.value
    return latest


def _folded(worker: Worker) -> int:
    try:
        counters = worker.stats()
    except (httpx.HTTPError, ValueError, KeyError):
        return 0
    return sum(counters.get(name, 0) for name in ("applied", "stale", "ignored", "duplicate"))


def _kill_after_folding(worker: Worker, folded: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _folded(worker) < folded:
        assert time.monotonic() < deadline, f"the worker folded too little\n{worker.service.log_tail(40)}"
        time.sleep(0.01)
    worker.service.kill()


@pytest.mark.parametrize("store", ["rocksdb://", "memory://"])
def test_after_sigkills_mid_batch_table_case_state_and_changelog_equal_the_fold(
    topics: Settings, tmp_path: Path, store: str
) -> None:
    settings = topics.model_copy(
        update={
            "offload_worker_store": store,
            "offload_state_batch_events": 7,
            "offload_state_batch_ms": 5.0,
            "offload_worker_standby_replicas": 0,
            # Commits every 50 ms: each kill finds offsets committed past many written batches.
            "offload_worker_commit_interval_s": 0.05,
        }
    )
    events = _events(seed=len(store))
    publish_webhooks(settings, events)
    expected = _expected(events)

    port: int | None = None
    for _ in range(KILLS):
        # The same name, so the same data dir: rocksdb finds what it wrote before the kill.
        worker = Worker(settings, tmp_path, name="worker", port=port)
        port = worker.port
        try:
            worker.start()
            _kill_after_folding(worker, FOLDED_BEFORE_KILL)
        finally:
            worker.service.stop()

    final = Worker(settings, tmp_path, name="worker", port=port)
    try:
        final.start()
        for case_id, record in expected.items():
            want = record.state.model_dump(mode="json")
            got = final.wait_case(case_id, lambda state, want=want: state == want)  # type: ignore[misc]
            assert got == want
        # Every batch the last worker held is written once it is idle (OFFLOAD_STATE_BATCH_MS).
        time.sleep(1.0)
        case_state = _latest(settings, topic_name(CASE_STATE, settings))
        changelog = _latest(settings, f"{settings.worker_app_id}-case_state-changelog")
    finally:
        final.service.stop()

    assert set(case_state) == set(expected) == set(changelog)
    for case_id, record in expected.items():
        assert json.loads(case_state[case_id]) == record.state.model_dump(mode="json"), case_id
        recovered: Any = CaseRecord.model_validate_json(changelog[case_id])
        assert recovered == record, case_id
