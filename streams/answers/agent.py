"""The answers feature: forwards each answer on ``answers`` to Offload, and makes the delayed attempts
scheduled on ``answers.retry``; both agents share one ``AnswerDelivery`` and one ``KeyedLanes``.

Answers are keyed by caseId. Each partition has its actor (``isolated_partitions``: the case-state table's
partition for a case is the one its actor's records come from), and within it the answers of many cases
are in flight at once, up to ``OFFLOAD_ANSWER_IN_FLIGHT`` per worker, one at a time per case and each
case's in the order published, across both topics (``streams.lanes``). A record's offset is committed only
once it and every earlier record of its partition have their terminal outcome or their next attempt on
``answers.retry``. Every record is handled inside a catch-all, so the actor never restarts.

A retry record not yet due holds its lane at most about a second (counted from when it was written),
without taking one of the in-flight slots, and is then put back on ``answers.retry`` unchanged, so a long
``Retry-After`` on one answer never delays the others' retries, and nothing waits in memory: a restart
loses no retry.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from offload_bridge.streams.answers.delivery import AnswerDelivery
from offload_bridge.streams.answers.outputs import AnswerOutputs, call_counts, outcome_counts
from offload_bridge.streams.context import Feature, WorkerContext
from offload_bridge.streams.journal import OutcomeJournal
from offload_bridge.streams.lanes import KeyedLanes
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.retry import hold_until_due
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS, ANSWERS_DLQ, ANSWERS_RETRY

ANSWER_JOURNAL_TABLE = "answer_journal"


def register(worker: WorkerContext) -> Feature:
    """The answer and retry agents, ``GET /stats/answers`` and the answers and answer_calls metrics."""
    in_flight = worker.settings.offload_answer_in_flight
    api = worker.offload.bounded(in_flight)
    delivery = create_delivery(worker, api)
    outcomes, calls = delivery.outcome_counts, delivery.call_counts
    lanes = KeyedLanes("answers", in_flight, calls=lambda: api.in_flight)

    @worker.app.agent(worker.topic(ANSWERS), name="answers", isolated_partitions=True)
    async def forward_answers(stream: Any) -> None:
        await lanes.consume(stream, delivery.on_answer, delivery.on_unexpected)

    @worker.app.agent(worker.topic(ANSWERS_RETRY), name="answer-retries", isolated_partitions=True)
    async def retry_answers(stream: Any) -> None:
        await lanes.consume(stream, delivery.on_retry, delivery.on_unexpected, before=hold_until_due)

    @worker.app.page("/stats/answers")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            data = {"outcomes": outcomes.as_dict(), **calls.as_dict(), **lanes.stats()}
            return self.json({"ok": True, "data": data})

    worker.metrics.add("answers", "answers by outcome (retrying and terminal)", outcomes.as_dict)
    worker.metrics.add(
        "answer_calls",
        "calls to Offload made for answers, retries put back, unexpected errors",
        lambda: {
            "input": calls["calls"],
            "case_lookup": calls["case_lookups"],
            "deferred_retry": calls["deferred"],
            "failed": calls["failed"],
        },
    )
    worker.metrics.add_families(lambda: lanes.gauges("offload_worker_answers"))
    return Feature("answers", {"outcomes": outcomes, "calls": calls})


def create_delivery(worker: WorkerContext, api: OffloadApi) -> AnswerDelivery:
    """The delivery both answer agents share, with its output topics; ``api``: the answers' view of the
    Offload client (their calls in flight)."""
    settings = worker.settings
    outcomes, calls = outcome_counts(), call_counts()
    outcome_topic = worker.topic(ANSWER_OUTCOMES)
    journal = OutcomeJournal(
        worker.app, settings, ANSWER_JOURNAL_TABLE, outcome_topic,
        help="per caseId, the answer records that have their terminal outcome on answer-outcomes",
    )  # fmt: skip
    outputs = AnswerOutputs(
        outcomes=outcome_topic,
        retry=worker.topic(ANSWERS_RETRY),
        dlq=worker.topic(ANSWERS_DLQ),
        journal=journal,
        outcome_counts=outcomes,
        call_counts=calls,
    )
    return AnswerDelivery(settings, worker.cases, api, outputs, outcomes, calls)
