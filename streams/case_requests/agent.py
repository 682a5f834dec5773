"""The case-requests feature: agents on ``case-requests`` (first attempts) and ``case-requests.retry``
(later ones) over one ``CaseCreation``, the request table and the outcome journal,
``GET /stats/case-requests`` and the case_requests metric.

Requests are keyed by requestId. Each partition has its actor (isolated partitions), and within it many
requests are in flight at once, up to ``OFFLOAD_CASE_REQUEST_IN_FLIGHT`` per worker, never two records of
the same requestId at once, across both topics (``streams.lanes``); a record's offset is committed only
once it and every earlier record of its partition are settled. Every error is caught per message, so the
actor never restarts.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.web import Request, Response, View

from offload_bridge.schemas.case_requests import CaseRequestRecord
from offload_bridge.streams.case_requests.creation import CaseCreation
from offload_bridge.streams.case_requests.outputs import CaseRequestOutputs
from offload_bridge.streams.context import Feature, WorkerContext
from offload_bridge.streams.journal import OutcomeJournal
from offload_bridge.streams.lanes import KeyedLanes
from offload_bridge.streams.messages import position
from offload_bridge.streams.retry import hold_until_due
from offload_bridge.streams.storage import add_model_table, store_options
from offload_bridge.topics import (
    CASE_REQUEST_OUTCOMES,
    CASE_REQUESTS,
    CASE_REQUESTS_DLQ,
    CASE_REQUESTS_RETRY,
)

log = logging.getLogger("offload_bridge.streams.case_requests")

CASE_REQUESTS_TABLE = "case_requests"
CASE_REQUEST_JOURNAL_TABLE = "case_request_journal"


def register(worker: WorkerContext) -> Feature:
    settings, app = worker.settings, worker.app
    # Partitions equal case-requests': each request is remembered in the partition it came from. Tables
    # start (and create their changelogs) in the order they are added: the request table first.
    table = add_model_table(
        app, CASE_REQUESTS_TABLE, CaseRequestRecord, settings.offload_topic_partitions,
        help="CaseRequestRecord per requestId", store_options=store_options(settings),
    )  # fmt: skip
    outcomes = worker.topic(CASE_REQUEST_OUTCOMES)
    journal = OutcomeJournal(
        app, settings, CASE_REQUEST_JOURNAL_TABLE, outcomes,
        help="per requestId, the request records that have their terminal outcome",
    )  # fmt: skip
    outputs = CaseRequestOutputs(
        outcomes, worker.topic(CASE_REQUESTS_RETRY), worker.topic(CASE_REQUESTS_DLQ), worker.case_events,
        journal,
    )  # fmt: skip
    api = worker.offload.bounded(settings.offload_case_request_in_flight)
    creation = CaseCreation(settings, table, api, outputs)

    async def skipped(message: Any, error: Exception) -> None:
        creation.counts.inc("failed")
        log.exception("%s[%s]@%s: failed, skipped", *position(message))

    lanes = KeyedLanes("case requests", settings.offload_case_request_in_flight, calls=lambda: api.in_flight)

    @app.agent(worker.topic(CASE_REQUESTS), name="case-requests", concurrency=1, isolated_partitions=True)
    async def create_cases(stream: Any) -> None:
        await lanes.consume(stream, creation.on_request, skipped)

    @app.agent(worker.topic(CASE_REQUESTS_RETRY), name="case-request-retries", isolated_partitions=True)
    async def retry_case_requests(stream: Any) -> None:
        await lanes.consume(stream, creation.on_retry, skipped, before=hold_until_due)

    @app.page("/stats/case-requests")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "data": {**creation.counts.as_dict(), **lanes.stats()}})

    worker.metrics.add("case_requests", "case requests by outcome", creation.counts.as_dict)
    worker.metrics.add_families(lambda: lanes.gauges("offload_worker_case_requests"))
    return Feature("case_requests", {"caseRequests": creation.counts})
