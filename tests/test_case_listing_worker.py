"""GET /cases on a real worker: a cursor walk lists each case once, on either store; bad queries are 400.

On rocksdb:// the walk reads Faust's private partition databases (``Store._dbs``): checked with
faust-streaming 0.15 and rocksdict 0.3, the minor releases pyproject.toml bounds them to.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload_bridge.settings import Settings
from offload_bridge.streams.state.listing import Position, encode_cursor
from offload_bridge.worker_client import bearer_headers
from tests.streams_support import (
    WORKER_TOKEN,
    Worker,
    event_body,
    publish_webhooks,
    running_workers,
    wait_for_spread,
)

CASES = 300
LIMIT = 7


def question(case_id: str, at: int = 1_000) -> bytes:
    return event_body(case_id, "case.input_needed", at, "INPUT_NEEDED", inputRequest="Q?",
                      inputRequestId=f"ir-{at}", inputRequestStatus="PENDING")  # fmt: skip


def completion(case_id: str, at: int = 2_000) -> bytes:
    return event_body(case_id, "case.completed", at, "COMPLETED", resultStatus="goal_achieved")


# The workers of these tests take the suite's token (the settings fixture carries it).
HEADERS = bearer_headers(WORKER_TOKEN)


def list_cases(url: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{url}/cases", params=params, headers=HEADERS, timeout=30)


def walk(
    url: str, limit: int = LIMIT, between_pages: Callable[[int], None] = lambda page: None, **params: Any
) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow nextCursor to the end: the caseIds listed in order, and each page's data without its cases."""
    listed: list[str] = []
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        answer = list_cases(url, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        assert len(data["cases"]) <= limit
        listed += [case["caseId"] for case in data.pop("cases")]
        pages.append(data)
        cursor = data["nextCursor"]
        assert data["truncated"] is (cursor is not None)
        if cursor is None:
            return listed, pages
        assert len(pages) < 10 * CASES, "the walk never ended"
        between_pages(len(pages))


def wait_folded(worker: Worker, applied: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.stats()["applied"] < applied:
        assert time.monotonic() < deadline, f"only {worker.stats()} of {applied} events folded"
        time.sleep(0.25)


def assert_invalid(answer: httpx.Response, about: str) -> None:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "INVALID_REQUEST"
    assert about in body["error"]["message"]


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_a_cursor_walk_lists_every_case_once_and_bad_queries_are_400(
    topics: Settings, tmp_path: Path, store: str
) -> None:
    store_settings = topics.model_copy(update={"offload_worker_store": store})
    partitions = store_settings.offload_topic_partitions
    cases = [f"walk-{n:04d}" for n in range(CASES)]
    waiting = set(cases[::3])
    worker = Worker(store_settings, tmp_path)
    with running_workers(worker):
        publish_webhooks(store_settings, (question(c) if c in waiting else completion(c) for c in cases))
        wait_folded(worker, CASES)

        listed, pages = walk(worker.url)
        assert Counter(listed) == Counter(cases), "every case exactly once"
        assert len(pages) == -(-CASES // LIMIT)
        for page in pages:
            assert page["partitions"] == list(range(partitions))
            assert page["partitionCount"] == partitions
            assert page["complete"] is True
        in_status, _ = walk(worker.url, status="INPUT_NEEDED")
        assert sorted(in_status) == sorted(waiting)

        # Cases arriving and changing while a walk is under way: each case present from the start is
        # listed once, and no case twice.
        arriving = iter(f"late-{n:04d}" for n in range(10 * CASES))

        def churn(page: int) -> None:
            changed = cases[(page * 11) % CASES]
            publish_webhooks(
                store_settings, [*(completion(next(arriving)) for _ in range(3)), completion(changed, 3_000)]
            )

        listed, _ = walk(worker.url, between_pages=churn)
        assert max(Counter(listed).values()) == 1, "a case listed twice"
        assert set(cases) <= set(listed), "a case present for the whole walk was skipped"

        # Bad queries: 400 in Offload's envelope, whatever the store.
        for cursor in ("garbage", "!!!", "x" * 5000, encode_cursor(Position(partitions, "walk-0001"))):
            assert_invalid(list_cases(worker.url, cursor=cursor), "cursor")
        for limit in ("0", "1001", "-3", "many", "1e3", ""):
            assert_invalid(list_cases(worker.url, limit=limit), "limit")

        fuzz_the_query_string(
            worker.url, cursors=[page["nextCursor"] for page in pages if page["nextCursor"]]
        )


def fuzz_the_query_string(url: str, cursors: list[str]) -> None:
    """Any query string: 200 or a 400 in the envelope, never a 5xx."""
    names = st.sampled_from(["status", "limit", "cursor", "x", ""]) | st.text(max_size=8)
    values = (
        st.text(max_size=40)
        | st.integers(-5, 2000).map(str)
        | st.sampled_from(cursors)
        | st.sampled_from(cursors).map(lambda cursor: cursor[:-2])
    )
    raw = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pairs=st.lists(st.tuples(names, values), max_size=4), raw=raw)
    def one(pairs: list[tuple[str, str | int | float | bool | None]], raw: str) -> None:
        for answer in (
            httpx.get(f"{url}/cases", params=pairs, headers=HEADERS, timeout=30),
            httpx.get(f"{url}/cases?{raw}", headers=HEADERS, timeout=30),
        ):
            assert answer.status_code in (200, 400), (answer.request.url, answer.status_code, answer.text)
            body = json.loads(answer.content)
            assert body["ok"] is (answer.status_code == 200)
            if answer.status_code == 400:
                assert body["error"]["code"] == "INVALID_REQUEST"

    one()


def test_after_a_scale_out_each_worker_walks_its_own_partitions_and_together_every_case_once(
    topics: Settings, tmp_path: Path
) -> None:
    # memory:// keeps one dict for every partition. The first worker folds every case while alone; when
    # the second joins, the dict of the first still holds the cases of the partitions it gave away (and
    # standby copies come in too): it must list only those of the partitions it owns now.
    store_settings = topics.model_copy(update={"offload_worker_store": "memory://"})
    partitions = store_settings.offload_topic_partitions
    cases = [f"pair-{n:04d}" for n in range(CASES)]
    first, second = (Worker(store_settings, tmp_path, name=name) for name in ("first", "second"))
    with running_workers(first):
        publish_webhooks(store_settings, (completion(case) for case in cases))
        wait_folded(first, CASES)
        assert Counter(walk(first.url, limit=50)[0]) == Counter(cases)
        with running_workers(second):
            owned = wait_for_spread([first, second], partitions)
            listed: list[str] = []
            for worker in (first, second):
                mine, pages = walk(worker.url, limit=50)
                assert {tuple(page["partitions"]) for page in pages} == {tuple(owned[worker.url])}
                assert all(page["complete"] is False for page in pages)
                listed += mine
            assert Counter(listed) == Counter(cases), "every case exactly once, by the worker owning it"
