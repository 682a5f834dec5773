"""``GET /cases/{caseId}/context``: the case as Offload returns it with its transcript, fetched by the worker.

The cache itself in-process (a counted fetch function and a clock the test moves); the route on a real worker
process against the simulator as a real process, whose truth counts every ``GET /cases/{id}`` that reached a
case (``reads``), so "served from the cache" is seen from Offload's side, not from the worker's own counters.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pydantic import HttpUrl, SecretStr

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY, RunningSimulator, simulator_process
from offload_bridge.streams.case_context.cache import ContextAnswer, ContextCache, Served
from offload_bridge.streams.case_context.fetch import answer_of, unusable_case_id
from offload_bridge.streams.offload_api import OffloadReply
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from offload_bridge.worker_client import WorkerClient, WorkerRefused
from tests.streams_support import WORKER_TOKEN, Worker

OBJECTIVE = "Collect a signed W-9 from the vendor"  # the simulator's example case
FIRST_EMAIL = f"To ap@northstar.example: {OBJECTIVE}"

# --- the cache, in-process ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class CountedFetch:
    """A fetch that counts its calls per case and answers ``status`` (holding each call until released)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: dict[str, int] = {}
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, case_id: str) -> ContextAnswer:
        self.calls[case_id] = self.calls.get(case_id, 0) + 1
        await self.release.wait()
        return ContextAnswer(self.status, f"{case_id}#{self.calls[case_id]}".encode(), "found")


def test_a_kept_answer_is_served_until_its_ttl_then_fetched_again() -> None:
    async def scenario() -> None:
        clock, fetch = Clock(), CountedFetch()
        cache = ContextCache(fetch, ttl_s=30, max_entries=10, clock=clock)
        first, how = await cache.get("c1")
        assert (first.body, how) == (b"c1#1", Served.FETCHED)
        clock.now += 29.9
        again, how = await cache.get("c1")
        assert (again.body, how) == (b"c1#1", Served.HIT)
        clock.now += 0.1
        later, how = await cache.get("c1")
        assert (later.body, how) == (b"c1#2", Served.FETCHED)
        assert fetch.calls == {"c1": 2}

    asyncio.run(scenario())


def test_concurrent_requests_for_a_case_share_one_fetch_and_a_gone_request_does_not_cancel_it() -> None:
    async def scenario() -> None:
        fetch = CountedFetch()
        fetch.release.clear()
        cache = ContextCache(fetch, ttl_s=30, max_entries=10, clock=Clock())
        waiting = [asyncio.ensure_future(cache.get("c1")) for _ in range(5)]
        other = asyncio.ensure_future(cache.get("c2"))
        await asyncio.sleep(0)
        waiting[0].cancel()  # the first request's browser went away
        await asyncio.sleep(0)
        fetch.release.set()
        answers = await asyncio.gather(*waiting[1:], other)
        assert fetch.calls == {"c1": 1, "c2": 1}
        assert {answer.body for answer, _ in answers[:-1]} == {b"c1#1"}
        assert sorted(how for _, how in answers[:-1]) == [Served.JOINED] * 4
        assert answers[-1][0].body == b"c2#1"
        # The fetch the cancelled request started finished and was kept.
        assert (await cache.get("c1"))[1] is Served.HIT

    asyncio.run(scenario())


def test_errors_are_not_kept_and_a_ttl_of_zero_keeps_nothing() -> None:
    async def scenario() -> None:
        failing = CountedFetch(status=503)
        cache = ContextCache(failing, ttl_s=30, max_entries=10, clock=Clock())
        await cache.get("c1")
        assert (await cache.get("c1"))[1] is Served.FETCHED
        assert failing.calls == {"c1": 2} and len(cache) == 0

        fetch = CountedFetch()
        uncached = ContextCache(fetch, ttl_s=0, max_entries=10, clock=Clock())
        await uncached.get("c1")
        assert (await uncached.get("c1"))[1] is Served.FETCHED and len(uncached) == 0

    asyncio.run(scenario())


def test_a_failed_fetch_reaches_every_waiter_and_the_next_request_fetches_again() -> None:
    async def scenario() -> None:
        calls = 0

        async def broken(case_id: str) -> ContextAnswer:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0)
            raise RuntimeError("a fault of ours")

        cache = ContextCache(broken, ttl_s=30, max_entries=10, clock=Clock())
        results = await asyncio.gather(cache.get("c1"), cache.get("c1"), return_exceptions=True)
        assert all(isinstance(result, RuntimeError) for result in results) and calls == 1
        with pytest.raises(RuntimeError):
            await cache.get("c1")
        assert calls == 2

    asyncio.run(scenario())


def test_the_least_recently_used_case_goes_first_beyond_the_bound() -> None:
    async def scenario() -> None:
        fetch = CountedFetch()
        cache = ContextCache(fetch, ttl_s=30, max_entries=2, clock=Clock())
        await cache.get("c1")
        await cache.get("c2")
        await cache.get("c1")  # c1 used last: c2 is the least recently used
        await cache.get("c3")
        assert len(cache) == 2
        assert (await cache.get("c1"))[1] is Served.HIT
        assert (await cache.get("c2"))[1] is Served.FETCHED
        assert fetch.calls == {"c1": 1, "c2": 2, "c3": 1}

    asyncio.run(scenario())


def _reply(status: int, data: dict[str, Any] | None = None, code: str | None = None) -> OffloadReply:
    return OffloadReply(status, data, code, "", None, enveloped=code is not None or data is not None)


def test_what_offload_answered_becomes_the_workers_answer() -> None:
    found = answer_of(_reply(200, {"caseId": "c1", "status": "RUNNING"}), "c1", 1234)
    assert (found.status, found.kind) == (200, "found")
    assert found.body == b'{"ok":true,"data":{"caseId":"c1","status":"RUNNING","fetchedAt":1234}}'
    for reply, status, kind in [
        (_reply(404, code="CASE_NOT_FOUND"), 404, "not_found"),
        (_reply(500), 503, "unavailable"),
        (_reply(429), 503, "unavailable"),
        (_reply(401, code="UNAUTHORIZED"), 502, "refused"),
        (_reply(403, code="FORBIDDEN"), 502, "refused"),
        (_reply(400, code="INVALID_REQUEST"), 502, "invalid"),
        (_reply(200, None), 502, "invalid"),
        (_reply(200, {"status": "RUNNING"}), 502, "invalid"),
    ]:
        answer = answer_of(reply, "c1", 1234)
        assert (answer.status, answer.kind) == (status, kind), reply
        assert answer.body.startswith(b'{"ok":false,"error":{"code":'), answer.body


def test_unusable_case_ids_are_named() -> None:
    assert unusable_case_id("a4f1-../x y") is None
    assert unusable_case_id(" ") == "the case id is blank"
    assert unusable_case_id("x" * 257) == "the case id is longer than 256 characters"
    assert unusable_case_id("a\nb") == "the case id has control characters"


# --- the route, on a real worker against the simulator ----------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    log_path = tmp_path_factory.mktemp("context-sim") / "simulator.log"
    with simulator_process("--step-ms", "50", log_path=log_path) as running:
        yield running


@pytest.fixture(scope="module")
def worker(
    kafka_broker: str, sim: RunningSimulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("context"),
        offload_worker_api_tokens=SecretStr(WORKER_TOKEN),
        offload_base_url=HttpUrl(sim.base_url),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
        # A call that fails pauses the worker's calls: briefly here, so a test sees them come back.
        offload_retry_base_s=0.2,
        offload_api_pause_max_s=1.0,
    )
    ensure_topics(settings)
    running = Worker(settings, tmp_path_factory.mktemp("context-worker"))
    try:
        running.start()
        yield running
    finally:
        running.service.stop()
        delete_topics_with_prefix(settings)


def _context(worker: Worker, case_id: str, **kwargs: Any) -> httpx.Response:
    return worker.get(f"/cases/{case_id}/context", **kwargs)


def _transcript_reads(sim: RunningSimulator, case_id: str) -> int:
    return sum(1 for read in sim.truth(case_id)["reads"] if read["includeTranscript"])


def _stats(worker: Worker) -> dict[str, int]:
    data: dict[str, int] = worker.get("/stats/case-context").json()["data"]
    return data


def _waiting_case(sim: RunningSimulator, **metadata: Any) -> dict[str, Any]:
    """A simulator case waiting for an answer (no webhooks: the worker need not know it); its truth."""
    case_id = sim.create_case(scenario="input_then_complete", metadata=metadata or None)
    return sim.wait_for_truth(case_id, lambda truth: truth["status"] == "INPUT_NEEDED")


def test_the_context_is_offloads_case_with_its_transcript(sim: RunningSimulator, worker: Worker) -> None:
    truth = _waiting_case(sim)
    case_id = truth["caseId"]
    before = time.time_ns() // 1_000_000
    answer = _context(worker, case_id)
    after = time.time_ns() // 1_000_000
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True
    data = body["data"]
    assert FIRST_EMAIL in data["conversationThread"]
    assert data["conversationThread"] == truth["conversationThread"]
    assert data["goal"]["objective"] == OBJECTIVE
    assert data["counterparty"]["name"] == "Maya Chen"
    assert data["senderPersona"]["name"] == "Avery"
    assert data["inputRequest"]["question"] == truth["inputRequest"]["question"]
    assert before <= data["fetchedAt"] <= after
    # Offload's case as received: every field of Offload's own view, unchanged, plus fetchedAt.
    assert {key: value for key, value in data.items() if key != "fetchedAt"} == sim.get_case(case_id) | {
        "conversationThread": truth["conversationThread"]
    }

    context = WorkerClient(worker.url, token=WORKER_TOKEN).context(case_id)
    assert context is not None
    assert (context.caseId, context.status, context.objective) == (case_id, "INPUT_NEEDED", OBJECTIVE)
    assert context.conversationThread is not None and FIRST_EMAIL in context.conversationThread
    assert context.inputRequest is not None and context.inputRequest.id == truth["inputRequest"]["id"]
    assert context.counterparty is not None and context.counterparty["address"] == "ap@northstar.example"
    assert context.fetchedAt == data["fetchedAt"], "the client's second read came from the cache"


def test_a_second_request_within_the_ttl_does_not_reach_offload(
    sim: RunningSimulator, worker: Worker
) -> None:
    case_id = _waiting_case(sim)["caseId"]
    before = _stats(worker)
    first = _context(worker, case_id).json()["data"]
    second = _context(worker, case_id).json()["data"]
    assert _transcript_reads(sim, case_id) == 1
    assert second["fetchedAt"] == first["fetchedAt"]
    after = _stats(worker)
    assert (after["fetched"] - before["fetched"], after["cache_hit"] - before["cache_hit"]) == (1, 1)
    metrics = worker.get("/metrics").text
    assert f'offload_worker_case_context_total{{kind="cache_hit"}} {float(after["cache_hit"])}' in metrics


def test_concurrent_requests_for_a_case_share_one_call_to_offload(
    sim: RunningSimulator, worker: Worker
) -> None:
    # Each call about this case takes 2 s at the simulator: the requests overlap the first one's call.
    case_id = _waiting_case(sim, simLatencyMs=2000)["caseId"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(_context, worker, case_id, timeout=30)
        sim.wait_in_flight("get_case")
        others = [pool.submit(_context, worker, case_id, timeout=30) for _ in range(3)]
        answers = [first.result(), *(future.result() for future in others)]
    assert [answer.status_code for answer in answers] == [200] * 4, [a.text for a in answers]
    assert len({answer.json()["data"]["fetchedAt"] for answer in answers}) == 1
    assert _transcript_reads(sim, case_id) == 1


def test_without_the_token_the_route_answers_401(sim: RunningSimulator, worker: Worker) -> None:
    case_id = _waiting_case(sim)["caseId"]
    answer = httpx.get(f"{worker.url}/cases/{case_id}/context", timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "UNAUTHORIZED"
    assert _transcript_reads(sim, case_id) == 0, "refused before asking Offload"
    with pytest.raises(WorkerRefused) as refused:
        WorkerClient(worker.url).context(case_id)
    assert refused.value.http_status == 401


def test_an_unknown_case_is_404_in_the_envelope(worker: Worker) -> None:
    case_id = f"no-such-case-{secrets.token_hex(4)}"
    answer = _context(worker, case_id)
    assert answer.status_code == 404
    assert answer.json() == {
        "ok": False,
        "error": {"code": "CASE_NOT_FOUND", "message": f"Offload knows no case {case_id}"},
    }
    assert WorkerClient(worker.url, token=WORKER_TOKEN).context(case_id) is None


def test_case_ids_that_are_no_plain_path_segment_are_answered_safely(worker: Worker) -> None:
    client = WorkerClient(worker.url, token=WORKER_TOKEN)
    # Quoted on the way in and on the way to Offload: each stays one segment, and reaches no other route.
    for case_id in ("../_sim/health", "a/b", "x y?z#w", "%2e%2e", "ünïcode"):
        assert client.context(case_id) is None, case_id
    for raw in ("a%0Ab", "x" * 300, "%20"):
        answer = _context(worker, raw)
        assert answer.status_code == 400, (raw, answer.text)
        assert answer.json()["error"]["code"] == "INVALID_REQUEST"
    assert _context(worker, "..").status_code == 404  # the client normalises it away: no such route


def test_offload_failing_is_503_never_kept_and_recovers(sim: RunningSimulator, worker: Worker) -> None:
    case_id = _waiting_case(sim)["caseId"]
    sim.set_faults(endpoints={"get_case": {"rate": 1.0, "error": "500-bare"}})
    try:
        failed = _context(worker, case_id)
    finally:
        sim.set_faults(endpoints={})
    assert failed.status_code == 503, failed.text
    error = failed.json()["error"]
    assert error["code"] == "OFFLOAD_UNAVAILABLE" and "HTTP 500" in error["message"]
    # The failure was not kept: once the worker's pause after the pushback ends, Offload answers again.
    deadline = time.monotonic() + 30
    while (answer := _context(worker, case_id)).status_code != 200:
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "OFFLOAD_UNAVAILABLE"
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert FIRST_EMAIL in answer.json()["data"]["conversationThread"]


# Last in the module: it stops the module's simulator.
def test_offload_stopped_is_503_in_the_envelope(sim: RunningSimulator, worker: Worker) -> None:
    kept = _waiting_case(sim)["caseId"]
    assert _context(worker, kept).status_code == 200
    unseen = _waiting_case(sim)["caseId"]
    sim.process.stop()
    answer = _context(worker, unseen)
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "OFFLOAD_UNAVAILABLE"
    assert error["message"].startswith("Offload could not be reached"), error
    with pytest.raises(WorkerRefused) as refused:
        WorkerClient(worker.url, token=WORKER_TOKEN).context(unseen)
    assert (refused.value.http_status, refused.value.code) == (503, "OFFLOAD_UNAVAILABLE")
    # What was fetched before stays served for its TTL.
    assert _context(worker, kept).status_code == 200
    assert worker.get("/ready").status_code == 200, "the worker itself is fine"
