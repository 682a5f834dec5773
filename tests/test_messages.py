"""Every agent catches per message (streams/messages.py): one failing record never stops its stream."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from offload_bridge.streams.messages import handle_each, position


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int


@dataclass
class _Event:
    message: _Message


class _Stream:
    def __init__(self, messages: list[_Message]) -> None:
        self.messages = messages

    async def events(self) -> AsyncIterator[_Event]:
        for message in self.messages:
            yield _Event(message)


async def test_a_failing_message_goes_to_failed_with_its_traceback_and_the_stream_moves_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages = [_Message("t.answers", 2, offset) for offset in range(3)]
    handled: list[int] = []
    failed: list[tuple[int, str]] = []
    log = logging.getLogger("test.messages")

    async def handle(message: _Message) -> None:
        if message.offset == 1:
            raise ValueError("poison")
        handled.append(message.offset)

    async def skipped(message: _Message, error: Exception) -> None:
        failed.append((message.offset, str(error)))
        log.exception("%s[%s]@%s: failed, skipped", *position(message))

    with caplog.at_level(logging.ERROR, logger="test.messages"):
        await handle_each(_Stream(messages), handle, skipped)

    assert handled == [0, 2]
    assert failed == [(1, "poison")]
    (record,) = caplog.records
    assert record.getMessage() == "t.answers[2]@1: failed, skipped"
    assert record.exc_info is not None and record.exc_info[0] is ValueError
