"""The worker's one admission of calls to Offload: on a fake clock, then through the client over real HTTP
to the simulator."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import HttpUrl, SecretStr

from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import (
    DEFAULT_API_KEY,
    RunningSimulator,
    case_body,
    simulator_process,
)
from offload_bridge.streams.offload_api import OffloadApi, OffloadUnreachable
from offload_bridge.streams.offload_limits import OffloadLimits, is_pushback


class Clock:
    """A clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def limits(clock: Clock, in_flight: int = 100, rps: float | None = None) -> OffloadLimits:
    # rng: the jitter of the pause is fixed by the seed, its bounds are what the tests check.
    return OffloadLimits(in_flight, rps, 1.0, 30.0, clock=clock, sleep=clock.sleep, rng=random.Random(7))


def test_what_counts_as_pushback() -> None:
    assert is_pushback(None)  # a timeout or a failed connection
    assert is_pushback(429) and is_pushback(429, "RATE_LIMITED")
    assert not is_pushback(429, "USAGE_LIMIT_REACHED"), "the monthly cap: no pause lifts it"
    assert all(is_pushback(status) for status in (408, 425, 500, 502, 503, 504))
    assert not any(is_pushback(status) for status in (200, 201, 202, 400, 401, 403, 404, 409))


async def test_the_calls_in_flight_at_once_never_exceed_the_bound() -> None:
    calls = OffloadLimits(3, None, 1.0, 30.0)
    peak = 0

    async def call() -> None:
        nonlocal peak
        admission = await calls.acquire()
        peak = max(peak, calls.in_flight)
        await asyncio.sleep(0.01)
        calls.release(admission, pushed_back=False)

    await asyncio.gather(*(call() for _ in range(20)))
    assert peak == 3 and calls.in_flight == 0


async def test_the_rate_spaces_the_starts() -> None:
    clock = Clock()
    calls = limits(clock, rps=5)
    starts = []
    for _ in range(51):
        calls.release(await calls.acquire(), pushed_back=False)
        starts.append(clock.now)
    assert starts[-1] - starts[0] == pytest.approx(10.0, rel=0.01)


async def test_the_calls_in_flight_when_offload_pushes_back_pause_once_not_once_each() -> None:
    clock = Clock()
    calls = limits(clock)
    in_flight = [await calls.acquire() for _ in range(64)]
    for admission in in_flight:  # Offload refuses all of them: one pushback, not 64
        calls.release(admission, pushed_back=True)
    assert calls.pauses == 1
    assert 0.5 <= calls.paused_s <= 1.0  # the first step of the backoff from OFFLOAD_RETRY_BASE_S (1 s)
    paused_until = clock.now + calls.paused_s

    # The next call waits out the pause; refused again, it doubles the pause.
    again = await calls.acquire()
    assert clock.now == pytest.approx(paused_until)
    calls.release(again, pushed_back=True)
    assert calls.pauses == 2 and 1.0 <= calls.paused_s <= 2.0
    third = await calls.acquire()
    calls.release(third, pushed_back=True)
    assert calls.pauses == 3 and 2.0 <= calls.paused_s <= 4.0

    # A call that goes through ends the series: the next pushback starts from the first step again.
    calls.release(await calls.acquire(), pushed_back=False)
    calls.release(await calls.acquire(), pushed_back=True)
    assert calls.pauses == 4 and 0.5 <= calls.paused_s <= 1.0


async def test_the_pause_never_exceeds_its_cap() -> None:
    clock = Clock()
    calls = limits(clock)
    for _ in range(20):
        calls.release(await calls.acquire(), pushed_back=True)
        assert calls.paused_s <= 30.0
    assert calls.paused_s >= 15.0


# --- through the client, over real HTTP -------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with simulator_process("--step-ms", "50", "--seed", "1") as running:
        yield running


def client_settings(sim: RunningSimulator, **changes: Any) -> Settings:
    return Settings(
        offload_base_url=HttpUrl(sim.base_url), offload_api_key=SecretStr(DEFAULT_API_KEY), **changes
    )


def test_a_503_pauses_every_call_of_the_client(sim: RunningSimulator) -> None:
    settings = client_settings(sim, offload_retry_base_s=0.4)

    async def run() -> tuple[int, float, float]:
        api = OffloadApi(settings)
        try:
            sim.set_faults(endpoints={"get_case": {"rate": 1.0, "error": "503"}})
            refused = await asyncio.gather(*(api.get_case(f"case-{n}") for n in range(32)))
            assert {reply.status for reply in refused} == {503}
            paused = api.limits.paused_s
            sim.set_faults(endpoints={})
            started = time.monotonic()
            answered = await api.create_case({})  # another endpoint, another feature: paused all the same
            assert answered.status == 400
            return api.limits.pauses, paused, time.monotonic() - started
        finally:
            sim.reset()
            await api.aclose()

    pauses, paused, waited = asyncio.run(run())
    assert pauses == 1, "32 calls refused at once are one pushback"
    assert 0.2 <= paused <= 0.4
    assert waited >= paused - 0.05


def test_usage_limit_reached_pauses_nothing(sim: RunningSimulator) -> None:
    async def run() -> tuple[int, str | None, int]:
        api = OffloadApi(client_settings(sim))
        try:
            sim.set_faults(usage_limit=0)
            reply = await api.create_case(case_body())
            return reply.status, reply.error_code, api.limits.pauses
        finally:
            sim.reset()
            await api.aclose()

    status, code, pauses = asyncio.run(run())
    assert (status, code) == (429, "USAGE_LIMIT_REACHED")
    assert pauses == 0


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_a_call_that_waited_for_a_pooled_connection_in_vain_never_reached_offload(
    sim: RunningSimulator, client: str
) -> None:
    """A smaller pool than the calls admitted (never so in the worker: the pool holds at least
    OFFLOAD_API_IN_FLIGHT connections) times out before sending, with either client."""
    settings = client_settings(
        sim, offload_http_max_connections=1, offload_api_in_flight=1, offload_http_connect_timeout_s=0.2
    )

    async def run() -> list[object]:
        sim.set_faults(latency_ms=1500)
        http = httpx.AsyncClient(
            base_url=sim.base_url,
            headers={"x-api-key": DEFAULT_API_KEY},
            limits=httpx.Limits(max_connections=1),
            timeout=httpx.Timeout(10.0, pool=0.2),
        )
        two_at_once = OffloadLimits(2, None, 1.0, 30.0)
        api = OffloadApi(settings, http=http if client == "httpx" else None, limits=two_at_once)
        try:
            return list(await asyncio.gather(api.get_case("a"), api.get_case("b"), return_exceptions=True))
        finally:
            sim.reset()
            await http.aclose()
            await api.aclose()

    results = asyncio.run(run())
    refused = [result for result in results if isinstance(result, OffloadUnreachable)]
    assert len(refused) == 1 and refused[0].reached is False, results
    assert ("PoolTimeout" if client == "httpx" else "ConnectionTimeoutError") in str(refused[0])


def test_the_http_pool_is_never_smaller_than_the_calls_in_flight() -> None:
    assert Settings(offload_api_in_flight=128, offload_http_max_connections=20).http_pool_connections == 128
    assert Settings(offload_api_in_flight=8, offload_http_max_connections=20).http_pool_connections == 20


def test_a_features_view_keeps_to_its_own_calls_in_flight_within_the_shared_limits(
    sim: RunningSimulator,
) -> None:
    async def run() -> tuple[int, int, int]:
        api = OffloadApi(client_settings(sim, offload_api_in_flight=6))
        answers, requests = api.bounded(3), api.bounded(5)
        peaks = [0, 0, 0]

        async def watch() -> None:
            while True:
                for n, count in enumerate((answers.in_flight, requests.in_flight, api.limits.in_flight)):
                    peaks[n] = max(peaks[n], count)
                await asyncio.sleep(0.005)

        sim.set_faults(latency_ms=200)
        watching = asyncio.create_task(watch())
        try:
            await asyncio.gather(
                *(answers.get_case(f"a-{n}") for n in range(10)),
                *(requests.get_case(f"r-{n}") for n in range(10)),
            )
        finally:
            watching.cancel()
            sim.reset()
            await api.aclose()
        return peaks[0], peaks[1], peaks[2]

    answers_peak, requests_peak, shared_peak = asyncio.run(run())
    assert answers_peak == 3
    assert requests_peak == 5, "its own bound, not the other feature's"
    assert shared_peak == 6, "both together within OFFLOAD_API_IN_FLIGHT"
