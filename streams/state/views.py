"""The worker's query API, in Offload's envelope: ``{"ok": true, "data": ...}`` or an error.

``GET /cases/{caseId}`` is routed to the worker owning the case's partition, so any worker answers for
every case. ``GET /cases`` lists this worker's own partitions a page at a time (``listing``) and says
which; ``GET /workers`` says which worker owns which partition, so a client can walk them all. Until the
table is recovered (and during a rebalance) every query answers 503 ``NOT_READY``: a fresh worker would
otherwise report cases as missing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from offload_bridge.schemas.questions import WorkerGroup, WorkerPartitions
from offload_bridge.streams.context import WorkerContext
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.state.fold import FoldResult
from offload_bridge.streams.state.listing import CaseLister, InvalidQuery, encode_cursor, parse_query

log = logging.getLogger(__name__)


def _body(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def error_response(view: View, status: int, code: str, message: str) -> Response:
    body = _body({"ok": False, "error": {"code": code, "message": message}})
    return view.bytes(body, content_type="application/json", status=status)


def ok_response(view: View, data_json: bytes, status: int = 200) -> Response:
    """``data_json`` is already JSON (a model's dump), spliced in without re-encoding."""
    body = b'{"ok":true,"data":' + data_json + b"}"
    return view.bytes(body, content_type="application/json", status=status)


def not_ready(view: View) -> Response:
    return error_response(view, 503, "NOT_READY", "the case-state table is recovering; try again shortly")


def register(streams: WorkerContext, counters: Counters) -> None:
    app, table = streams.app, streams.table
    count = streams.settings.offload_topic_partitions
    lister = CaseLister(table, count)

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            if not streams.is_ready():
                return not_ready(self)
            return ok_response(self, _body({"ready": True}))

    @app.page("/stats")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            counts = counters.as_dict()
            counts["folded"] = sum(counts[outcome.value] for outcome in FoldResult)
            return ok_response(self, _body({"ready": streams.is_ready(), "caseEvents": counts}))

    @app.table_route(table=table, match_info="case_id")
    async def lookup(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Runs on the worker owning the case; table_route forwards the request there first."""
        case_id = request.match_info["case_id"]
        record = streams.cases.get(case_id)
        if record is None:
            return error_response(view, 404, "CASE_NOT_FOUND", f"no event of case {case_id} was seen")
        return ok_response(view, record.state.model_dump_json().encode())

    @app.page("/cases/{case_id}")
    class Case(View):
        async def get(self, request: Request, case_id: str) -> Response:
            if not streams.is_ready():
                return not_ready(self)
            try:
                return await lookup(self, request)
            except ServiceUnavailable:
                return not_ready(self)
            except aiohttp.ClientError as error:
                log.warning("GET /cases/%s: the owning worker did not answer: %s", case_id, error)
                message = "the worker owning this case did not answer"
                return error_response(self, 503, "OWNER_UNREACHABLE", message)

    @app.page("/cases")
    class Cases(View):
        async def get(self, request: Request) -> Response:
            if not streams.is_ready():
                return not_ready(self)
            try:
                query = parse_query(request.query, count)
            except InvalidQuery as error:
                return error_response(self, 400, "INVALID_REQUEST", str(error))
            # The listing reads the table's store, which the fold writes per batch: write what is held
            # first, so a page shows every event folded before the request, as GET /cases/{id} does.
            await streams.cases.drain()
            partitions = streams.local_partitions()
            page = lister.page(partitions, query)
            meta = {
                "worker": streams.settings.worker_url,
                "partitions": sorted(partitions),
                "partitionCount": count,
                "complete": len(partitions) == count,
                "nextCursor": encode_cursor(page.next) if page.next is not None else None,
                # Older clients read this: true while the walk has more to look at.
                "truncated": page.next is not None,
            }
            data = _body(meta)[:-1] + b',"cases":[' + b",".join(page.cases) + b"]}"
            return ok_response(self, data)

    @app.page("/workers")
    class Workers(View):
        async def get(self, request: Request) -> Response:
            """The group's workers and their partitions, from the last assignment this worker received.

            Faust gives every member the whole assignment (it routes GET /cases/{id} with it), so any
            worker tells a client where every partition is listed.
            """
            if not streams.is_ready():
                return not_ready(self)
            owners = app.router.table_metadata(table.name)
            group = WorkerGroup(
                worker=streams.settings.worker_url,
                partitionCount=count,
                workers=[
                    WorkerPartitions(
                        url=str(url).rstrip("/"),
                        partitions=sorted({p for ps in topics.values() for p in ps}),
                    )
                    for url, topics in sorted(owners.items(), key=lambda item: str(item[0]))
                ],
            )
            return ok_response(self, group.model_dump_json().encode())
