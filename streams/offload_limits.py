"""Admission of every call the worker makes to Offload: how many at once, how fast, and none while Offload
pushes back. One per worker, inside the one Offload client (``offload_api.OffloadApi``), so the answers,
the case requests, the reconciler and the case context route share it.

Offload's limits apply to the API key, whatever a call is for, so the worker keeps one account of its
calls rather than one per feature: more answers in flight never means more calls than the worker may make,
and a throttle seen by one feature holds back the others' calls too.

- at most ``in_flight`` calls at once (``OFFLOAD_API_IN_FLIGHT``). The HTTP pool holds at least as many
  connections (``offload_api``), so a call never waits inside httpx for a connection: that wait would
  count against the request's timeout, and its ``PoolTimeout`` would look like a call that may have
  reached Offload;
- at most ``rps`` calls started a second on average (``OFFLOAD_API_RPS``; unset: no rate cap);
- none while paused: a 429 (not the monthly ``USAGE_LIMIT_REACHED``, which no pause lifts), a 5xx, a
  timeout or a failed connection pauses every call of the worker, for a backoff from
  ``OFFLOAD_RETRY_BASE_S`` that doubles while the pushbacks go on, up to ``OFFLOAD_API_PAUSE_MAX_S``.
  Only a call admitted since the latest pause began makes the pause longer: the calls already in flight
  when Offload started refusing are one pushback, not 64 (with many calls in flight, counting each would
  double the pause 64 times over one short outage). A ``Retry-After`` is not applied to the whole worker:
  it answers one call, and the answer or request that got it waits that long on its retry topic; a
  long one must not hold up every other case.

The features' own bounds sit in front of this one: the reconciler's gate (``reconcile.gate``: its
concurrency, rate, budget per window and pause, the reconciler's alone), and the in-flight bounds of the
answers and the case requests (``lanes``). None of them counts against another's.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from offload_bridge.settings import Settings
from offload_bridge.streams.ratelimit import TokenBucket, admit
from offload_bridge.streams.retry import RETRYABLE_STATUSES, backoff_s

# A 429 that says the monthly cap of new cases is reached: a refusal of that call, not a throttle.
USAGE_LIMIT_REACHED = "USAGE_LIMIT_REACHED"
MIN_WAIT_S = 1e-3


def is_pushback(status: int | None, error_code: str | None = None) -> bool:
    """True when an answer (``status``; None: no answer, a timeout or a failed connection) says Offload
    wants fewer calls."""
    if status is None:
        return True
    if status == 429:
        return error_code != USAGE_LIMIT_REACHED
    return status in RETRYABLE_STATUSES or status >= 500


@dataclass(frozen=True)
class Admission:
    """One admitted call: ``epoch`` is the count of pauses when it started."""

    epoch: int


class OffloadLimits:
    def __init__(
        self,
        in_flight: int,
        rps: float | None,
        pause_base_s: float,
        pause_max_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be >= 1")
        self.capacity = in_flight
        self.pause_base_s = pause_base_s
        self.pause_max_s = pause_max_s
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self._bucket = TokenBucket(rps, clock=clock) if rps is not None else None
        self._slots = asyncio.Semaphore(in_flight)
        self._paused_until = 0.0
        self._epoch = 0  # pauses so far
        self._pushbacks = 0  # pushbacks in a row, each from a call admitted since the pause before it
        self.in_flight = 0
        self.pauses = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> OffloadLimits:
        return cls(
            settings.offload_api_in_flight,
            settings.offload_api_rps,
            settings.offload_retry_base_s,
            settings.offload_api_pause_max_s,
        )

    async def acquire(self) -> Admission:
        """Wait until one more call may start; it counts as in flight until ``release``."""
        await admit(self._slots, self._wait_s, self._sleep)
        self.in_flight += 1
        return Admission(self._epoch)

    def release(self, admission: Admission, pushed_back: bool) -> None:
        """The call admitted as ``admission`` ended; ``pushed_back``: Offload wants fewer calls."""
        self.in_flight -= 1
        self._slots.release()
        if admission.epoch != self._epoch:
            return  # started before the latest pause: that pause already answered what it tells
        if not pushed_back:
            self._pushbacks = 0
            return
        self._pushbacks += 1
        self._epoch += 1
        self.pauses += 1
        delay = backoff_s(self._pushbacks, self.pause_base_s, self.pause_max_s, rng=self._rng)
        self._paused_until = max(self._paused_until, self._clock() + delay)

    @property
    def paused_s(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def _wait_s(self) -> float:
        """0 when a call may start now (then it takes its token), else how long to wait first."""
        if (paused := self._paused_until - self._clock()) > 0:
            return max(paused, MIN_WAIT_S)
        if self._bucket is not None and (bucket := self._bucket.wait_s()) > 0:
            return max(bucket, MIN_WAIT_S)
        return 0.0
