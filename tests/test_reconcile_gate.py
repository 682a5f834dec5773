"""The reconciler's call gate on a fake clock: in flight, rate, budget per window, pause."""

from __future__ import annotations

import asyncio

import pytest

from offload_bridge.streams.reconcile.gate import CallGate


class Clock:
    """A clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.starts: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def gate(
    clock: Clock, rps: float = 1000, concurrency: int = 100, budget: int = 10_000, window: float = 3600
) -> CallGate:
    return CallGate(rps, concurrency, budget, window, clock=clock, sleep=clock.sleep)


async def start_calls(clock: Clock, calls: CallGate, count: int) -> None:
    for _ in range(count):
        await calls.acquire()
        clock.starts.append(clock.now)
        calls.release()


async def test_the_budget_is_never_exceeded_in_any_window() -> None:
    clock = Clock()
    calls = gate(clock, rps=50, budget=100, window=60)
    await start_calls(clock, calls, 350)
    starts = clock.starts
    # Every window of 60 s (starting at any call) holds at most 100 starts.
    for first, at in enumerate(starts):
        inside = sum(1 for other in starts[first:] if other < at + 60)
        assert inside <= 100
    # And the budget is used: 350 calls take a little over 3 windows, not more.
    assert 3 * 60 <= starts[-1] - starts[0] < 4 * 60


async def test_the_rate_spaces_the_starts() -> None:
    clock = Clock()
    calls = gate(clock, rps=5)
    await start_calls(clock, calls, 51)
    assert clock.starts[-1] - clock.starts[0] == pytest.approx(10.0, rel=0.01)


async def test_a_pause_holds_every_call_and_budget_left_counts_down() -> None:
    clock = Clock()
    calls = gate(clock, budget=10, window=100)
    await start_calls(clock, calls, 3)
    assert calls.budget_left() == 7
    calls.pause(30)
    calls.pause(5)  # a shorter pause does not shorten the longer one
    before = clock.now
    await start_calls(clock, calls, 1)
    assert clock.starts[-1] - before == pytest.approx(30)
    clock.now += 100
    assert calls.budget_left() == 10


async def test_no_more_than_concurrency_calls_are_in_flight() -> None:
    calls = CallGate(1000, 3, 10_000, 3600)
    peak = 0

    async def call() -> None:
        nonlocal peak
        await calls.acquire()
        try:
            peak = max(peak, calls.in_flight)
            await asyncio.sleep(0.01)
        finally:
            calls.release()

    await asyncio.gather(*(call() for _ in range(20)))
    assert peak == 3 and calls.in_flight == 0
