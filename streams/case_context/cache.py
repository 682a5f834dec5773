"""A short-lived cache of case contexts, one fetch at a time per case.

A page showing a question asks for its case's context each time it is opened or refreshed, and several
people may look at the same case at once; without this every view would be a call to Offload, counted
against the API key's limits that the answers need. So:

- a successful answer is reused for ``ttl_s`` seconds (its age is in the answer: ``fetchedAt``); an error
  is never kept, so the next request asks again;
- requests for a case whose fetch is under way wait for that fetch instead of starting another;
- at most ``max_entries`` cases are kept, the least recently used dropped first: a transcript can be long.

The fetch runs as a task of its own, so a request that goes away (the browser closed) does not cancel the
fetch the others wait for.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum


class Served(StrEnum):
    """How a request got its answer (the names of the counters that count them)."""

    HIT = "cache_hit"  # a kept answer younger than the TTL
    JOINED = "joined"  # waited for a fetch another request had started
    FETCHED = "fetched"  # started a call to Offload


@dataclass(frozen=True)
class ContextAnswer:
    """What the worker answers for a case's context: the HTTP status and the whole envelope."""

    status: int
    body: bytes
    kind: str  # what Offload's answer was (a counter name): found, not_found, unavailable, ...
    retry_after_s: float | None = None

    @property
    def keep(self) -> bool:
        """Only the case itself is kept: an error says nothing about the next request."""
        return self.status == 200


class ContextCache:
    def __init__(
        self,
        fetch: Callable[[str], Awaitable[ContextAnswer]],
        ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._fetch = fetch
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._kept: OrderedDict[str, tuple[float, ContextAnswer]] = OrderedDict()  # case -> (kept at, answer)
        self._fetching: dict[str, asyncio.Task[ContextAnswer]] = {}

    def __len__(self) -> int:
        return len(self._kept)

    async def get(self, case_id: str) -> tuple[ContextAnswer, Served]:
        """The case's context, and how it was served. Raises what the fetch raised."""
        kept = self._fresh(case_id)
        if kept is not None:
            return kept, Served.HIT
        task = self._fetching.get(case_id)
        served = Served.JOINED
        if task is None:
            task = asyncio.ensure_future(self._fetch_and_keep(case_id))
            # A fetch whose requests all went away still ends; retrieve its exception so none is logged
            # as "never retrieved" (the requests that waited got it).
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._fetching[case_id] = task
            served = Served.FETCHED
        return await asyncio.shield(task), served

    def _fresh(self, case_id: str) -> ContextAnswer | None:
        entry = self._kept.get(case_id)
        if entry is None:
            return None
        kept_at, answer = entry
        if self._clock() - kept_at >= self.ttl_s:
            del self._kept[case_id]
            return None
        self._kept.move_to_end(case_id)
        return answer

    async def _fetch_and_keep(self, case_id: str) -> ContextAnswer:
        try:
            answer = await self._fetch(case_id)
        finally:
            self._fetching.pop(case_id, None)
        if answer.keep and self.ttl_s > 0:
            self._kept[case_id] = (self._clock(), answer)
            self._kept.move_to_end(case_id)
            while len(self._kept) > self.max_entries:
                self._kept.popitem(last=False)
        return answer
