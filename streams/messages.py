"""What every agent of the worker does with a Faust message: say where it sits, and handle it alone.

An exception that escapes an agent's loop makes Faust acknowledge the message and restart the actor, so
every agent catches per message and routes the failure itself (``handle_each``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


def position(message: Any) -> tuple[str, int, int]:
    """Where a record sits: its topic, partition and offset."""
    return str(message.topic), int(message.partition), int(message.offset)


async def handle_each(
    stream: Any,
    handle: Callable[[Any], Awaitable[None]],
    failed: Callable[[Any, Exception], Awaitable[None]],
) -> None:
    """Hand every message of ``stream`` to ``handle``; one that raises goes to ``failed``, which is called
    while the exception is being handled (``log.exception`` there keeps the traceback), and the stream
    moves on."""
    async for event in stream.events():
        try:
            await handle(event.message)
        except Exception as error:
            await failed(event.message, error)
