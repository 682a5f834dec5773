"""The retry agent: makes the delayed attempts scheduled on ``answers.retry``.

One actor per partition. A record not yet due holds its partition at most about a second (counted from
when it was written) and is then put back on ``answers.retry`` unchanged, so a long ``Retry-After`` on one
answer never delays the others' retries, and nothing waits in memory: a restart loses no retry.
"""

from __future__ import annotations

from typing import Any

from offload_bridge.streams.agents.answers import raw_topic
from offload_bridge.streams.answers.delivery import AnswerDelivery
from offload_bridge.streams.app import StreamsApp
from offload_bridge.topics import ANSWERS_RETRY, topic_name


def register(streams: StreamsApp, delivery: AnswerDelivery) -> Any:
    source = raw_topic(streams, topic_name(ANSWERS_RETRY, streams.settings))

    @streams.app.agent(source, name="answer-retries", isolated_partitions=True)
    async def retry_answers(stream: Any) -> None:
        async for event in stream.events():
            try:
                await delivery.on_retry(event.message)
            except Exception as error:
                await delivery.on_unexpected(event.message, error)

    return retry_answers
