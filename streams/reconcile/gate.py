"""Admission of the reconciler's calls to Offload: how many, how fast, how many per window, and when not.

Offload's API budget is shared by everything a client does, so a worker keeps its reconcile calls inside
limits it is given rather than finding them by being throttled:

- at most ``concurrency`` calls in flight (a slow Offload must not cost a task per due case);
- at most ``rps`` calls started a second on average (a token bucket);
- at most ``budget_calls`` calls started in any ``budget_window_s`` (a sliding window of start times, so
  the budget holds over every window, not only over aligned hours);
- none while paused: a 429, 5xx or timeout means Offload wants fewer calls, from the whole worker.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from offload_bridge.streams.ratelimit import TokenBucket, admit

MIN_WAIT_S = 1e-3


class CallGate:
    def __init__(
        self,
        rps: float,
        concurrency: int,
        budget_calls: int,
        budget_window_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if concurrency < 1 or budget_calls < 1 or budget_window_s <= 0:
            raise ValueError("concurrency and budget_calls must be >= 1, budget_window_s > 0")
        self.concurrency = concurrency
        self.budget_calls = budget_calls
        self.budget_window_s = budget_window_s
        self._clock = clock
        self._sleep = sleep
        self._bucket = TokenBucket(rps, clock=clock)
        self._slots = asyncio.Semaphore(concurrency)
        self._started: deque[float] = deque()  # start times within the last window, oldest first
        self._paused_until = 0.0
        self.in_flight = 0

    async def acquire(self) -> None:
        """Wait until one more call may start, and count it as started."""
        await admit(self._slots, self._wait_s, self._sleep)
        self.in_flight += 1

    def release(self) -> None:
        """A call admitted by ``acquire`` has ended."""
        self.in_flight -= 1
        self._slots.release()

    def pause(self, delay_s: float) -> None:
        """No call starts for ``delay_s`` (a longer pause already set stays)."""
        self._paused_until = max(self._paused_until, self._clock() + delay_s)

    @property
    def paused_s(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def budget_left(self) -> int:
        """Calls that may still start in the current window."""
        self._forget_old(self._clock())
        return max(0, self.budget_calls - len(self._started))

    def _wait_s(self) -> float:
        """0 when a call may start now (then it is counted), else how long to wait before asking again.

        The budget and the pause are looked at before the bucket, so that a token is taken only by a
        call that starts."""
        # Waits are at least a millisecond: a remainder below the clock's resolution would otherwise be
        # slept again and again without the clock moving past it.
        now = self._clock()
        if (paused := self._paused_until - now) > 0:
            return max(paused, MIN_WAIT_S)
        self._forget_old(now)
        if len(self._started) >= self.budget_calls:
            return max(self._started[0] + self.budget_window_s - now, MIN_WAIT_S)
        if (bucket := self._bucket.wait_s()) > 0:
            return max(bucket, MIN_WAIT_S)
        self._started.append(now)
        return 0.0

    def _forget_old(self, now: float) -> None:
        horizon = now - self.budget_window_s
        while self._started and self._started[0] <= horizon:
            self._started.popleft()
