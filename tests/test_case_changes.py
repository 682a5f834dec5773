"""The worker's case changes: the state agent tells every listener about each record it writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from offload_bridge.schemas.case_state import CaseRecord
from offload_bridge.streams.context import CaseChanges, WorkerContext
from offload_bridge.streams.state.agent import fold_counts, handle
from tests.inprocess_support import MemoryTable, Topic, settings
from tests.streams_support import event_body


@dataclass
class Sent:
    """A Faust topic's ``send`` that records what it was given."""

    records: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **record: Any) -> None:
        self.records.append(record)


@dataclass
class Heard:
    changes: list[tuple[str, int, CaseRecord]] = field(default_factory=list)

    def __call__(self, case_id: str, partition: int, record: CaseRecord) -> None:
        self.changes.append((case_id, partition, record))


def worker(table: MemoryTable, case_state: Sent) -> WorkerContext:
    """Only what the state agent's ``handle`` uses."""
    return WorkerContext(
        settings=settings(), app=cast(Any, None), case_events=None, case_state=case_state, table=table,
        offload=cast(Any, None), metrics=cast(Any, None),
    )  # fmt: skip


def test_every_listener_hears_every_change_in_order() -> None:
    changes = CaseChanges()
    first, second = Heard(), Heard()
    changes.subscribe(first)
    changes.subscribe(second)
    record = cast(CaseRecord, object())
    changes.publish("c1", 3, record)
    changes.publish("c2", 1, record)
    assert first.changes == second.changes == [("c1", 3, record), ("c2", 1, record)]


def test_a_failing_listener_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    def broken(case_id: str, partition: int, record: CaseRecord) -> None:
        raise RuntimeError("listener bug")

    changes = CaseChanges()
    heard = Heard()
    changes.subscribe(broken)
    changes.subscribe(heard)
    changes.publish("c1", 0, cast(CaseRecord, object()))
    assert [change[0] for change in heard.changes] == ["c1"]
    assert "a listener of case changes failed" in caplog.text


async def test_the_state_agent_tells_each_record_it_writes_with_the_events_partition() -> None:
    table, case_state, heard = MemoryTable(), Sent(), Heard()
    context = worker(table, case_state)
    context.case_changes.subscribe(heard)
    topic, counters, invalid = Topic("case-events"), fold_counts(), Sent()
    headers = [("received_at", b"5000")]
    question = event_body("c1", "case.input_needed", 1_000, "INPUT_NEEDED", inputRequest="Is a PDF fine?",
                          inputRequestId="ir-1", inputRequestedAt=1_000)  # fmt: skip
    first = topic.record("c1", question, headers)
    await handle(context, counters, invalid, first)
    assert heard.changes == [("c1", first.partition, table["c1"])]
    assert len(case_state.records) == 1

    # A duplicate writes nothing, and so tells nothing; a record that is no event neither.
    await handle(context, counters, invalid, topic.record("c1", first.value, headers))
    await handle(context, counters, invalid, topic.record("c1", b"{}", headers))
    assert len(heard.changes) == 1 and len(invalid.records) == 1

    done = topic.record("c1", event_body("c1", "case.completed", 2_000, "COMPLETED"), headers)
    await handle(context, counters, invalid, done)
    assert heard.changes[-1] == ("c1", done.partition, table["c1"])
    assert table["c1"].state.status == "COMPLETED" and len(case_state.records) == 2


async def test_a_failing_listener_costs_the_agent_none_of_its_outputs() -> None:
    def broken(case_id: str, partition: int, record: CaseRecord) -> None:
        raise RuntimeError("listener bug")

    table, case_state = MemoryTable(), Sent()
    context = worker(table, case_state)
    context.case_changes.subscribe(broken)
    message = Topic("case-events").record(
        "c1", event_body("c1", "case.completed", 2_000, "COMPLETED"), [("received_at", b"5000")]
    )
    await handle(context, fold_counts(), Sent(), message)
    assert "c1" in table and len(case_state.records) == 1
