"""Delayed attempts through a retry topic, shared by answers (``answers.retry``) and case requests
(``case-requests.retry``): the backoff, and how long a record not yet due may hold its partition.

A record not yet due holds its partition at most about a second (counted from when it was written) and
is then put back on its retry topic unchanged, so a long ``Retry-After`` on one record never delays the
others' retries, and nothing waits in memory: a restart loses no retry.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from offload_bridge.schemas.answers import now_ms

# HTTP statuses worth another attempt (besides any other 5xx): the request was throttled or failed in
# transit.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# How long a retry record not yet due may hold up its partition, counted from when it was written: a
# record waiting alone is put back about once a second, and a queue of waiting records adds no delay.
RETRY_HOLD_S = 1.0


def backoff_s(
    attempt: int,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay after failed attempt ``attempt``: exponential backoff with equal jitter (half fixed, half
    random, so retries of many records spread out), capped, and never shorter than Retry-After."""
    ceiling = min(cap_s, base_s * 2 ** max(attempt - 1, 0))
    jittered = (rng or random).uniform(ceiling / 2, ceiling)
    return jittered if retry_after_s is None else max(retry_after_s, jittered)


async def wait_until_due(not_before_ms: int, written_at_s: float | None) -> bool:
    """Hold until ``not_before_ms`` if that is near; False when the record is still not due after the
    hold and must be put back on its retry topic. ``written_at_s``: the record's timestamp (seconds)."""
    due_in = (not_before_ms - now_ms()) / 1000
    if due_in <= 0:
        return True
    age = max(0.0, time.time() - written_at_s) if written_at_s else 0.0
    hold = due_in if due_in <= RETRY_HOLD_S else max(0.0, RETRY_HOLD_S - age)
    await asyncio.sleep(hold)
    return (not_before_ms - now_ms()) / 1000 <= 0.001


async def hold_until_due(message: Any) -> None:
    """``wait_until_due`` for a retry record (its ``notBefore``), before it is handled: the lanes
    (``streams.lanes``) wait here without holding an in-flight slot. The handler checks again and puts
    back what is still not due; a record that cannot be read is left to the handler to route."""
    try:
        not_before = json.loads(message.value or b"{}").get("notBefore")
    except (ValueError, AttributeError):
        return
    if isinstance(not_before, int) and not isinstance(not_before, bool):
        await wait_until_due(not_before, message.timestamp)
