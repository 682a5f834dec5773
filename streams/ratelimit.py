"""A token bucket (at most ``rate`` calls a second on average, bursts up to ``burst``), and the admission
loop the worker's call limits share: a slot, then a wait until the limits let the call start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def wait_s(self) -> float:
        """Take a token if one is there (returns 0), else how long until one will be."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        # A token short by a rounding error is a token: else its remainder, smaller than the clock's
        # resolution, would be waited for again and again.
        if self._tokens >= 1 - 1e-9:
            self._tokens = max(0.0, self._tokens - 1)
            return 0.0
        return (1 - self._tokens) / self.rate

    async def take(self) -> None:
        while (delay := self.wait_s()) > 0:
            await asyncio.sleep(delay)


async def admit(
    slots: asyncio.Semaphore, wait_s: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
) -> None:
    """Take one of ``slots``, then wait until ``wait_s()`` says 0 (it takes what the call uses, e.g. a
    token, as it says so). A wait that is cancelled or fails gives the slot back."""
    await slots.acquire()
    try:
        while (delay := wait_s()) > 0:
            await sleep(delay)
    except BaseException:
        slots.release()
        raise
