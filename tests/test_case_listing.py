"""GET /cases paging in-process: the cursor, the query, and walks over both stores' layouts.

The memory store is a dict holding every partition (standby copies included); the rocksdb store is one
rocksdict database per partition, written here as Faust writes it (raw keys, Faust's offset row among them).
The listing reads those databases through Faust's private ``Store._dbs``: checked with faust-streaming 0.15
and rocksdict 0.3, the minor releases pyproject.toml bounds them to; tests/test_pinned_dependencies.py
checks that the real store still has what ``RocksStore`` stands for.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rocksdict
from hypothesis import given, settings
from hypothesis import strategies as st

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.case_state import CaseRecord, CaseState
from offload_bridge.streams.state import listing
from offload_bridge.streams.state.listing import (
    CaseLister,
    InvalidQuery,
    ListQuery,
    Page,
    Position,
    decode_cursor,
    encode_cursor,
    parse_query,
)

PARTITIONS = 6
OFFSET_KEY = b"__faust\0offset__"


def record(case_id: str, status: str = "RUNNING") -> CaseRecord:
    return CaseRecord(state=CaseState(caseId=case_id, status=status, firstSeenAt=1, updatedAt=1))


class MemoryStore:
    """What the listing sees of Faust's memory store: no partition databases."""


class DictTable:
    """A table on the memory store: one dict for every partition."""

    def __init__(self) -> None:
        self.data = MemoryStore()
        self.rows: dict[str, CaseRecord] = {}

    def put(self, value: CaseRecord) -> None:
        self.rows[value.state.caseId] = value

    def delete(self, case_id: str) -> None:
        del self.rows[case_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def items(self) -> Iterator[tuple[str, CaseRecord]]:
        return iter(self.rows.items())


class RocksStore:
    """The parts of Faust's rocksdb store the listing reads, over real rocksdict databases."""

    use_rocksdict = True
    offset_key = OFFSET_KEY

    def __init__(self, path: Path, partitions: int) -> None:
        self._dbs = {
            partition: rocksdict.Rdict(
                str(path / f"case_state-{partition}.db"), rocksdict.Options(raw_mode=True)
            )
            for partition in range(partitions)
        }
        for database in self._dbs.values():
            database.put(OFFSET_KEY, b"42")

    def _decode_value(self, raw: bytes) -> CaseRecord:
        return CaseRecord.model_validate_json(raw)

    def close(self) -> None:
        for database in self._dbs.values():
            database.close()


class RocksTable:
    def __init__(self, store: RocksStore) -> None:
        self.data = store

    def put(self, value: CaseRecord) -> None:
        key = value.state.caseId
        self.data._dbs[partition_for(key, PARTITIONS)].put(key.encode(), value.model_dump_json().encode())

    def delete(self, case_id: str) -> None:
        self.data._dbs[partition_for(case_id, PARTITIONS)].delete(case_id.encode())

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a rocksdb table is walked through its databases, not read whole")

    def items(self) -> Iterator[tuple[str, CaseRecord]]:
        raise AssertionError("a rocksdb table is walked through its databases, not read whole")


Table = DictTable | RocksTable


@pytest.fixture(params=["memory", "rocksdb"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Table]:
    if request.param == "memory":
        yield DictTable()
        return
    store = RocksStore(tmp_path, PARTITIONS)
    try:
        yield RocksTable(store)
    finally:
        store.close()


def walk(
    lister: CaseLister,
    partitions: set[int],
    limit: int,
    status: str | None = None,
    between_pages: Callable[[int], None] = lambda page: None,
) -> list[str]:
    """Every page of a walk, cursor to cursor; the caseIds listed, in order."""
    listed: list[str] = []
    after: Position | None = None
    for number in range(10_000):
        page: Page = lister.page(partitions, ListQuery(status=status, limit=limit, after=after))
        assert len(page.cases) <= limit
        listed += [json.loads(case)["caseId"] for case in page.cases]
        if page.next is None:
            return listed
        # Through the cursor's text, as a client carries it.
        after = decode_cursor(encode_cursor(page.next), PARTITIONS)
        between_pages(number)
    raise AssertionError("the walk never ended")


def ids(label: str, count: int) -> list[str]:
    return [f"{label}-{n:04d}" for n in range(count)]


def test_a_walk_lists_every_case_of_its_partitions_once_in_position_order(table: Table) -> None:
    cases = ids("case", 300)
    for case_id in cases:
        table.put(record(case_id))
    mine = {0, 2, 3, 5}
    lister = CaseLister(table, PARTITIONS)
    listed = walk(lister, mine, limit=7)
    # The other partitions' cases are standby copies (memory) or absent (rocksdb): never listed here.
    expected = sorted(
        Position(partition_for(c, PARTITIONS), c) for c in cases if partition_for(c, PARTITIONS) in mine
    )
    assert listed == [position.case_id for position in expected]
    assert walk(lister, set(range(PARTITIONS)), limit=1000) == [
        position.case_id for position in sorted(Position(partition_for(c, PARTITIONS), c) for c in cases)
    ]


def test_cases_present_for_the_whole_walk_are_listed_once_whatever_changes_between_pages(
    table: Table,
) -> None:
    rng = random.Random(7)
    stable = ids("stable", 250)
    leaving = ids("leaving", 60)
    for case_id in stable + leaving:
        table.put(record(case_id))
    arriving = iter(ids("arriving", 400))

    def churn(page: int) -> None:
        for _ in range(5):
            table.put(record(next(arriving)))
        if leaving:
            table.delete(leaving.pop(rng.randrange(len(leaving))))
        table.put(record(rng.choice(stable), status=rng.choice(["INPUT_NEEDED", "COMPLETED"])))

    listed = walk(CaseLister(table, PARTITIONS), set(range(PARTITIONS)), limit=7, between_pages=churn)
    assert len(listed) == len(set(listed)), "a case was listed twice"
    assert set(stable) <= set(listed), "a case present for the whole walk was skipped"


def test_a_status_walk_lists_exactly_the_cases_in_that_status(table: Table) -> None:
    waiting = set(ids("waiting", 40))
    for n, case_id in enumerate(ids("other", 200)):
        table.put(record(case_id, status="COMPLETED" if n % 2 else "RUNNING"))
    for case_id in waiting:
        table.put(record(case_id, status="INPUT_NEEDED"))
    listed = walk(CaseLister(table, PARTITIONS), set(range(PARTITIONS)), limit=7, status="INPUT_NEEDED")
    assert sorted(listed) == sorted(waiting)
    assert walk(CaseLister(table, PARTITIONS), set(range(PARTITIONS)), limit=7, status="NO_SUCH") == []


def test_a_rocksdb_page_looks_at_a_bounded_number_of_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "SCAN_BUDGET", 50)
    store = RocksStore(tmp_path, PARTITIONS)
    try:
        table = RocksTable(store)
        for case_id in ids("busy", 400):
            table.put(record(case_id))
        table.put(record("rare-1", status="INPUT_NEEDED"))
        table.put(record("rare-2", status="INPUT_NEEDED"))
        lister = CaseLister(table, PARTITIONS)
        first = lister.page(set(range(PARTITIONS)), ListQuery(status="INPUT_NEEDED", limit=5, after=None))
        assert first.next is not None, "the budget ended the page before the walk was done"
        listed = walk(lister, set(range(PARTITIONS)), limit=5, status="INPUT_NEEDED")
        assert sorted(listed) == ["rare-1", "rare-2"]
    finally:
        store.close()


def test_an_empty_table_is_one_empty_last_page(table: Table) -> None:
    page = CaseLister(table, PARTITIONS).page(set(range(PARTITIONS)), ListQuery(None, 10, None))
    assert page == Page(cases=[], next=None)


@given(partition=st.integers(0, PARTITIONS - 1), case_id=st.text(min_size=1, max_size=200))
def test_a_cursor_stands_for_its_position(partition: int, case_id: str) -> None:
    try:
        case_id.encode()
    except UnicodeEncodeError:
        return  # a lone surrogate is no caseId: keys come from UTF-8
    position = Position(partition, case_id)
    cursor = encode_cursor(position)
    assert decode_cursor(cursor, PARTITIONS) == position
    assert parse_query({"cursor": cursor}, PARTITIONS).after == position


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "abc",  # base64 of bytes that are not UTF-8
        "x" * 3000,
        encode_cursor(Position(1, "c")) + "=",  # cursors are handed out unpadded
        encode_cursor(Position(1, "c"))[:-1] + "N",  # the same bytes, spelt with other unused low bits
        "MjoxOmM",  # version 2
        "MTotMTpj",  # partition -1
        "MTowMTpj",  # partition 01
        "MTox",  # no caseId
        "MTo5OmM",  # partition 9 of 6
        "_-_-",
        "////",
        "4pyTIMOgIGxhIG1vZGU",  # UTF-8, but not a cursor
        "gA",  # not UTF-8
    ],
)
def test_a_cursor_this_api_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidQuery):
        decode_cursor(cursor, PARTITIONS)


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_any_text_is_a_cursor_or_refused(cursor: str) -> None:
    try:
        position = decode_cursor(cursor, PARTITIONS)
    except InvalidQuery:
        return
    assert encode_cursor(position) == cursor


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "+7", " 7", "7 ", "0_7", "seven", "", "7.0", "١٢"])
def test_a_limit_outside_1_to_1000_is_refused(limit: str) -> None:
    with pytest.raises(InvalidQuery, match="limit"):
        parse_query({"limit": limit}, PARTITIONS)


def test_the_query_defaults() -> None:
    assert parse_query({}, PARTITIONS) == ListQuery(status=None, limit=100, after=None)
    assert parse_query({"cursor": "", "limit": "1000", "status": "COMPLETED"}, PARTITIONS) == ListQuery(
        status="COMPLETED", limit=1000, after=None
    )
    assert parse_query({"limit": "0001"}, PARTITIONS).limit == 1
