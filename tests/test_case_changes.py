"""The worker's case changes: the fold puts each changed record with its event's partition, and the hub
the writer publishes to tells every listener, even when one of them fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from offload_bridge.schemas.case_state import CaseRecord
from offload_bridge.settings import Settings
from offload_bridge.streams.reconcile.schedule import SchedulePolicy
from offload_bridge.streams.state.agent import fold_counts, handle
from offload_bridge.streams.state.changes import CaseChanges
from tests.inprocess_support import Topic
from tests.streams_support import event_body

SCHEDULE = SchedulePolicy.from_settings(Settings())


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


@dataclass
class Writer:
    """Only what the state agent's ``handle`` uses of ``StateWriter``: ``get`` and ``put``."""

    table: dict[str, CaseRecord] = field(default_factory=dict)
    puts: list[tuple[str, int, CaseRecord]] = field(default_factory=list)

    def get(self, case_id: str) -> CaseRecord | None:
        return self.table.get(case_id)

    def put(self, case_id: str, partition: int, record: CaseRecord) -> None:
        self.table[case_id] = record
        self.puts.append((case_id, partition, record))


def test_every_listener_hears_every_change_in_order() -> None:
    changes, first, second = CaseChanges(), Heard(), Heard()
    changes.subscribe(first)
    changes.subscribe(second)
    records = [cast(CaseRecord, object()) for _ in range(3)]
    for n, record in enumerate(records):
        changes.publish(f"c{n}", n, record)
    expected = [(f"c{n}", n, record) for n, record in enumerate(records)]
    assert first.changes == expected and second.changes == expected


def test_a_failing_listener_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    def broken(case_id: str, partition: int, record: CaseRecord) -> None:
        raise RuntimeError("listener bug")

    changes, heard = CaseChanges(), Heard()
    changes.subscribe(broken)
    changes.subscribe(heard)
    changes.publish("c1", 0, cast(CaseRecord, object()))
    assert [change[0] for change in heard.changes] == ["c1"]
    assert "a listener of case changes failed" in caplog.text


async def test_the_state_agent_puts_each_changed_record_with_the_events_partition() -> None:
    writer = Writer()
    topic, counters, invalid = Topic("case-events"), fold_counts(), Sent()
    headers = [("received_at", b"5000")]
    question = event_body("c1", "case.input_needed", 1_000, "INPUT_NEEDED", inputRequest="Is a PDF fine?",
                          inputRequestId="ir-1", inputRequestedAt=1_000)  # fmt: skip
    first = topic.record("c1", question, headers)
    await handle(cast(Any, writer), counters, invalid, first, SCHEDULE)
    assert writer.puts == [("c1", first.partition, writer.table["c1"])]

    # A duplicate changes nothing, and so puts nothing; a record that is no event neither.
    await handle(cast(Any, writer), counters, invalid, topic.record("c1", first.value, headers), SCHEDULE)
    await handle(cast(Any, writer), counters, invalid, topic.record("c1", b"{}", headers), SCHEDULE)
    assert len(writer.puts) == 1 and len(invalid.records) == 1

    done = topic.record("c1", event_body("c1", "case.completed", 2_000, "COMPLETED"), headers)
    await handle(cast(Any, writer), counters, invalid, done, SCHEDULE)
    assert writer.puts[-1] == ("c1", done.partition, writer.table["c1"])
    assert writer.table["c1"].state.status == "COMPLETED"
