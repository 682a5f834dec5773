"""The rebuild scan's shortcut: a CaseRecord's JSON, as the table's codec writes it, is recognised as
terminal exactly when its case is, whatever its ids, metadata or result hold."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from offload_bridge.schemas.case_state import CaseRecord, CaseState
from offload_bridge.schemas.events import TERMINAL_STATUSES
from offload_bridge.streams.state.batch import record_json
from offload_bridge.streams.state.scan import is_terminal_json
from offload_bridge.streams.storage import PydanticCodec

CODEC: PydanticCodec[CaseRecord] = PydanticCodec(CaseRecord)
STATUSES = st.sampled_from([None, "INPUT_NEEDED", "IN_PROGRESS", "COMPLETED", "FAILED", "completed", "X"])
# Text that looks like what the shortcut reads: quotes, backslashes and the status field itself.
TRICKY = st.text(
    alphabet=st.sampled_from(['"', "\\", "s", ":", ",", "{", "}", "é", "\n"]), max_size=12
) | st.just('","status":"COMPLETED"')


@given(
    case_id=TRICKY.filter(bool),
    reference=st.none() | TRICKY,
    status=STATUSES,
    metadata=st.none() | st.dictionaries(TRICKY, TRICKY, max_size=2),
    result=st.none() | st.just({"status": "COMPLETED"}),
)
def test_terminal_json_is_recognised_exactly(
    case_id: str, reference: str | None, status: str | None, metadata: Any, result: Any
) -> None:
    state = CaseState(
        caseId=case_id, clientReferenceId=reference, status=status, metadata=metadata, result=result,
        firstSeenAt=1, updatedAt=2,
    )  # fmt: skip
    value = CODEC.dumps(CaseRecord(state=state, recentEventIds=["evt_1"]))
    assert is_terminal_json(value) == (status in TERMINAL_STATUSES)


@given(
    case_id=TRICKY.filter(bool),
    status=STATUSES,
    event_ids=st.lists(st.text(max_size=20), max_size=64),
)
def test_a_record_encoded_around_its_state_json_is_the_codecs_own(
    case_id: str, status: str | None, event_ids: list[str]
) -> None:
    state = CaseState(caseId=case_id, status=status, firstSeenAt=1, updatedAt=2)
    record = CaseRecord(state=state, recentEventIds=event_ids)
    encoded = record_json(record, state.model_dump_json().encode())
    assert CODEC.loads(encoded) == record
    assert encoded == CODEC.dumps(record)
    assert is_terminal_json(encoded) == (status in TERMINAL_STATUSES)
