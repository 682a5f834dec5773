"""A reconcile sweep in-process against the simulator: our state against Offload's, and what it publishes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import now_ms
from offload_bridge.schemas.case_state import CaseRecord, CaseState
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.streams.reconcile.sweep import Reconciler, reconcile_counts
from tests.inprocess_support import PARTITIONS, MemoryTable, PublishedEvents, Simulator, settings, simulator

LONG_AGO = 1_000


def reconciler(sim: Simulator, table: MemoryTable, worker_settings: Settings | None = None) -> Reconciler:
    worker_settings = worker_settings or settings(offload_reconcile_stale_s=1, offload_reconcile_rps=1000)
    return Reconciler(
        worker_settings,
        table,
        table,
        sim.api(worker_settings),
        PublishedEvents(),
        owned=lambda: set(range(PARTITIONS)),
        ready=lambda: True,
        counters=reconcile_counts(),
    )


def known(case_id: str, status: str, updated_at: int, last_event_at: int | None = None) -> CaseRecord:
    """Our state of a case, last changed at ``updated_at``."""
    return CaseRecord(
        state=CaseState(
            caseId=case_id, status=status, firstSeenAt=updated_at, updatedAt=updated_at,
            lastEventAt=last_event_at if last_event_at is not None else updated_at,
        )
    )  # fmt: skip


@pytest.fixture
async def sim() -> Any:
    async with simulator() as running:
        yield running


async def test_a_case_offload_moved_on_gets_a_synthesized_event_with_offloads_id(sim: Simulator) -> None:
    case_id = await sim.create_case(case_body(scenario="input_then_complete"))
    truth = await sim.wait_for_case(case_id, lambda c: c["status"] == "INPUT_NEEDED")
    table = MemoryTable({case_id: known(case_id, "CREATED", LONG_AGO)})
    sweep = reconciler(sim, table)
    await sweep.sweep()
    published = sweep.publish
    assert isinstance(published, PublishedEvents)
    ((published_case, event),) = published.events
    body = json.loads(event.body)
    assert published_case == case_id and body["event_type"] == "case.input_needed"
    assert body["event_id"] == f"evt_{case_id}_case_input_needed_{truth['updatedAt']}"
    assert body["data"]["inputRequestId"] == truth["inputRequest"]["id"]
    assert sweep.counters.as_dict() | {"sweeps": 1, "checked": 1, "published": 1} == sweep.counters.as_dict()


async def test_a_case_we_know_as_offload_does_is_level_and_nothing_is_published(sim: Simulator) -> None:
    case_id = await sim.create_case(case_body(scenario="input_then_complete"))
    truth = await sim.wait_for_case(case_id, lambda c: c["status"] == "INPUT_NEEDED")
    record = known(case_id, "INPUT_NEEDED", now_ms() - 60_000, last_event_at=truth["updatedAt"])
    state = CaseState.model_validate({**record.state.model_dump(), "inputRequest": truth["inputRequest"]})
    table = MemoryTable({case_id: CaseRecord(state=state)})
    sweep = reconciler(sim, table)
    await sweep.sweep()
    assert isinstance(sweep.publish, PublishedEvents) and sweep.publish.events == []
    assert (sweep.counters["checked"], sweep.counters["level"]) == (1, 1)


async def test_fresh_terminal_and_unknown_cases_are_not_published(sim: Simulator) -> None:
    done = await sim.create_case(case_body(scenario="complete"))
    await sim.wait_for_case(done, lambda c: c["status"] == "COMPLETED")
    fresh = await sim.create_case(case_body(scenario="input_then_complete"))
    table = MemoryTable(
        {
            done: known(done, "COMPLETED", LONG_AGO),  # terminal: never swept
            fresh: known(fresh, "CREATED", now_ms()),  # changed just now: not stale yet
            "gone": known("gone", "RUNNING", LONG_AGO),  # Offload does not know it
        }
    )
    sweep = reconciler(sim, table)
    await sweep.sweep()
    assert isinstance(sweep.publish, PublishedEvents) and sweep.publish.events == []
    assert (sweep.counters["checked"], sweep.counters["not_found"]) == (0, 1)


async def test_a_throttled_call_pauses_every_call_of_the_worker_and_the_case_stays_due(
    sim: Simulator,
) -> None:
    await sim.set_faults(endpoints={"get_case": {"rate": 1.0, "error": "429"}})
    table = MemoryTable({f"c-{n}": known(f"c-{n}", "RUNNING", LONG_AGO + n) for n in range(3)})
    sweep = reconciler(sim, table, settings(
        offload_reconcile_stale_s=1, offload_reconcile_rps=1000, offload_reconcile_concurrency=1,
        offload_retry_base_s=0.4, offload_retry_max_s=10,
    ))  # fmt: skip
    sweep.rebuild()
    started = time.monotonic()
    await sweep.sweep()
    # Each 429 paused the next call: at least 0.2 s (half of 0.4, the jitter's floor), then 0.4 s.
    assert time.monotonic() - started >= 0.6
    assert (sweep.counters["throttled"], sweep.counters["checked"]) == (3, 0)
    assert sweep.gets.as_dict()["throttled"] == 3
    # Nothing was learnt: no schedule moved, every case is still due and is asked again after the pause.
    assert all(table[case_id].check is None for case_id in table)
    assert sweep.due_cases(now_ms()) == ["c-0", "c-1", "c-2"]


class CountingTable(MemoryTable):
    """Counts the walks of the whole table and the cases read one by one."""

    def __init__(self, records: dict[str, CaseRecord]) -> None:
        super().__init__(records)
        self.walks = 0
        self.reads: list[str] = []

    def items(self) -> Any:
        self.walks += 1
        return super().items()

    def keys(self) -> Any:
        self.walks += 1
        return super().keys()

    def values(self) -> Any:
        self.walks += 1
        return super().values()

    def __iter__(self) -> Any:
        self.walks += 1
        return super().__iter__()

    def get(self, key: str, default: Any = None) -> Any:
        self.reads.append(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.reads.append(key)
        return super().__getitem__(key)


async def test_a_sweep_reads_the_due_cases_only_never_the_terminal_ones(sim: Simulator) -> None:
    behind = await sim.create_case(case_body(scenario="complete"))
    await sim.wait_for_case(behind, lambda c: c["status"] == "COMPLETED")
    records = {f"done-{n}": known(f"done-{n}", ("COMPLETED", "FAILED")[n % 2], LONG_AGO) for n in range(300)}
    records |= {f"fresh-{n}": known(f"fresh-{n}", "RUNNING", now_ms()) for n in range(50)}  # not due yet
    records[behind] = known(behind, "RUNNING", LONG_AGO)
    table = CountingTable(records)
    sweep = reconciler(sim, table, settings(offload_reconcile_stale_s=600, offload_reconcile_rps=1000))
    sweep.rebuild()  # what the end of a rebalance does: the one walk
    assert table.walks == 1 and len(sweep.index) == 51  # the open cases only

    table.walks, table.reads = 0, []
    for _ in range(3):
        await sweep.sweep()
    # Only the case due was read, and asked about once: the check moved its next one ahead; no walk.
    assert table.walks == 0 and set(table.reads) == {behind}
    assert (sweep.counters["checked"], sweep.counters["published"], sweep.counters["not_found"]) == (1, 1, 0)

    # The state agent folds what was published: the case is terminal now, out of the index and the sweeps.
    record = known(behind, "COMPLETED", now_ms())
    table[behind] = record
    sweep.case_changed(behind, partition_for(behind, PARTITIONS), record)
    table.reads = []
    await sweep.sweep()
    assert table.walks == 0 and table.reads == [] and len(sweep.index) == 50
    assert sweep.counters["checked"] == 1


async def test_a_check_finding_the_case_waiting_for_our_answer_leaves_it_to_the_safety_check(
    sim: Simulator,
) -> None:
    """It cannot move until answered: no backoff checks (10, 30, 90 min) that could only find nothing."""
    case_id = await sim.create_case(case_body(scenario="input_then_complete"))
    await sim.wait_for_case(case_id, lambda c: c["status"] == "INPUT_NEEDED")
    table = MemoryTable({case_id: known(case_id, "RUNNING", LONG_AGO)})
    sweep = reconciler(sim, table, settings(offload_reconcile_rps=1000, offload_reconcile_jitter=0.0))
    before = now_ms()
    await sweep.sweep()
    check = table[case_id].check
    assert check is not None and check.covered and not check.hinted
    assert before + 8 * 3600_000 <= check.dueAt <= now_ms() + 8 * 3600_000


async def test_a_check_finding_a_step_scheduled_comes_back_just_after_it_not_on_the_backoff(
    sim: Simulator,
) -> None:
    # A long step: Offload's nextActionAt is an hour ahead.
    case_id = await sim.create_case(case_body(scenario="complete", step_ms=3_600_000))
    truth = await sim.wait_for_case(case_id, lambda c: c["status"] == "CREATED")
    table = MemoryTable({case_id: known(case_id, "CREATED", LONG_AGO, last_event_at=truth["updatedAt"])})
    sweep = reconciler(sim, table, settings(offload_reconcile_rps=1000, offload_reconcile_jitter=0.0))
    await sweep.sweep()
    check = table[case_id].check
    next_action_at = (await sim.get_case(case_id))["nextActionAt"]
    assert check is not None and check.hinted and not check.covered
    assert (check.nextActionAt, check.dueAt) == (next_action_at, next_action_at + 30_000)
