"""The answer agent: forwards each answer on ``answers`` to Offload (first attempt).

One actor per partition (``isolated_partitions``): answers are keyed by caseId, so order is kept per case,
a slow Offload call stalls only its own partition, and the case-state table's partition for the case is
the one this actor owns. Every record is handled inside a catch-all, so the actor never restarts.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from offload_bridge.streams.answers.delivery import AnswerDelivery
from offload_bridge.streams.answers.outputs import AnswerCounters, AnswerOutputs
from offload_bridge.streams.app import StreamsApp
from offload_bridge.streams.journal import OutcomeJournal
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS, ANSWERS_DLQ, ANSWERS_RETRY, topic_name

ANSWER_JOURNAL_TABLE = "answer_journal"


def raw_topic(streams: StreamsApp, name: str) -> Any:
    return streams.app.topic(
        name,
        partitions=streams.settings.offload_topic_partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


def create_delivery(streams: StreamsApp) -> AnswerDelivery:
    """The delivery both answer agents share, with its output topics."""
    settings = streams.settings
    counters = AnswerCounters()
    outcomes = raw_topic(streams, topic_name(ANSWER_OUTCOMES, settings))
    journal = OutcomeJournal(
        streams.app, settings, ANSWER_JOURNAL_TABLE, outcomes,
        help="per caseId, the answer records that have their terminal outcome on answer-outcomes",
    )  # fmt: skip
    outputs = AnswerOutputs(
        outcomes=outcomes,
        retry=raw_topic(streams, topic_name(ANSWERS_RETRY, settings)),
        dlq=raw_topic(streams, topic_name(ANSWERS_DLQ, settings)),
        case_state=streams.case_state,
        counters=counters,
        journal=journal,
    )
    return AnswerDelivery(settings, streams.table, streams.offload, outputs, counters)


def register(streams: StreamsApp, delivery: AnswerDelivery) -> Any:
    source = raw_topic(streams, topic_name(ANSWERS, streams.settings))

    @streams.app.page("/stats/answers")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "data": delivery.counters.as_dict()})

    @streams.app.agent(source, name="answers", isolated_partitions=True)
    async def forward_answers(stream: Any) -> None:
        async for event in stream.events():
            try:
                await delivery.on_answer(event.message)
            except Exception as error:
                await delivery.on_unexpected(event.message, error)

    return forward_answers
