"""Server-sent events: each open page learns which cases changed, and refreshes what shows them.

The feed applies records in batches; after each batch that changed something the hub wakes every
subscriber, which sends one event naming the changed cases (or ``"all": true`` when many did). Changes
that arrive while a subscriber is still sending are merged into its next event, so a slow browser never
makes the hub hold more than one set of case ids for it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

router = APIRouter()

KEEPALIVE_S = 15.0
# More changed cases than this in one event: the page refreshes whatever it shows.
MAX_IDS = 200


class _Subscriber:
    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.cases: set[str] = set()
        self.everything = False


class Hub:
    def __init__(self) -> None:
        self._subscribers: set[_Subscriber] = set()
        self.closed = False

    def publish(self, cases: Iterable[str]) -> None:
        changed = set(cases)
        for subscriber in self._subscribers:
            if not subscriber.everything:
                subscriber.cases |= changed
                if len(subscriber.cases) > MAX_IDS:
                    subscriber.everything, subscriber.cases = True, set()
            subscriber.wake.set()

    def close(self) -> None:
        self.closed = True
        for subscriber in self._subscribers:
            subscriber.wake.set()

    async def stream(self, request: Request) -> AsyncIterator[bytes]:
        subscriber = _Subscriber()
        self._subscribers.add(subscriber)
        try:
            yield b"retry: 3000\n\n"
            while not self.closed and not await request.is_disconnected():
                try:
                    await asyncio.wait_for(subscriber.wake.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if self.closed:
                    break
                subscriber.wake.clear()
                payload = {"all": subscriber.everything, "cases": sorted(subscriber.cases)}
                subscriber.cases, subscriber.everything = set(), False
                yield b"event: change\ndata: " + json.dumps(payload).encode() + b"\n\n"
        finally:
            self._subscribers.discard(subscriber)


@router.get("/events")
async def change_events(request: Request) -> StreamingResponse:
    hub: Hub = request.app.state.hub
    return StreamingResponse(
        hub.stream(request),
        media_type="text/event-stream",
        # No buffering on the way (nginx honours X-Accel-Buffering), no caching.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
