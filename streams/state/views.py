"""The worker's query API, in Offload's envelope: ``{"ok": true, "data": ...}`` or an error.

``GET /cases/{caseId}`` is routed to the worker owning the case's partition, so any worker answers for
every case. ``GET /cases`` lists this worker's own partitions and says which. Until the table is
recovered (and during a rebalance) every query answers 503 ``NOT_READY``: a fresh worker would
otherwise report cases as missing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.streams.context import WorkerContext
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.state.fold import FoldResult

log = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000


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
            status = request.query.get("status")
            try:
                limit = int(request.query.get("limit", DEFAULT_LIST_LIMIT))
                if not 1 <= limit <= MAX_LIST_LIMIT:
                    raise ValueError
            except ValueError:
                return error_response(self, 400, "INVALID_REQUEST", f"limit must be 1..{MAX_LIST_LIMIT}")
            partitions = streams.local_partitions()
            count = streams.settings.offload_topic_partitions
            cases: list[bytes] = []
            truncated = False
            for case_id, record in table.items():
                if status is not None and record.state.status != status:
                    continue
                if partition_for(case_id, count) not in partitions:
                    continue  # a standby copy of another worker's case
                if len(cases) == limit:
                    truncated = True
                    break
                cases.append(record.state.model_dump_json().encode())
            meta = {
                "worker": streams.settings.worker_url,
                "partitions": sorted(partitions),
                "partitionCount": count,
                "complete": len(partitions) == count,
                "truncated": truncated,
            }
            data = _body(meta)[:-1] + b',"cases":[' + b",".join(cases) + b"]}"
            return ok_response(self, data)
