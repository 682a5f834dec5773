"""The worker's ``GET /cases/{caseId}/context`` and ``GET /stats/case-context``, and their counters in
``offload_worker_case_context_total{kind=...}``: how requests were served (``cache_hit``, ``joined``,
``fetched``: the calls to Offload) and what Offload's answers were (``found``, ``not_found``,
``unavailable``, ``refused``, ``invalid``), plus ``invalid_id`` (refused before asking) and ``failed``
(a fault of ours, answered 500).
"""

from __future__ import annotations

import logging
import math

from faust.web import Request, Response, View

from offload_bridge.streams.case_context.cache import ContextAnswer, ContextCache, Served
from offload_bridge.streams.case_context.fetch import error_answer, fetch_context, unusable_case_id
from offload_bridge.streams.context import Feature, WorkerContext
from offload_bridge.streams.counters import Counters

log = logging.getLogger(__name__)

OFFLOAD_KINDS = ("found", "not_found", "unavailable", "refused", "invalid")


def context_counts() -> Counters:
    return Counters([*(served.value for served in Served), *OFFLOAD_KINDS, "invalid_id", "failed"])


def register(worker: WorkerContext) -> Feature:
    settings = worker.settings
    counters = context_counts()
    # The HTTP client's own timeouts bound a call once sent; this bounds the wait for the worker's limits
    # too, so a page never hangs behind a backlog of answers.
    within_s = settings.offload_http_timeout_s + settings.offload_http_connect_timeout_s

    async def fetch(case_id: str) -> ContextAnswer:
        answer = await fetch_context(worker.offload, case_id, within_s)
        counters.inc(answer.kind)
        if answer.status == 502:
            # Asking again will not help (the key refused, an answer that is no case): someone must look.
            log.warning("GET /cases/%s/context: %s", case_id, answer.body.decode(errors="replace"))
        return answer

    cache = ContextCache(
        fetch, settings.offload_case_context_cache_s, settings.offload_case_context_cache_entries
    )

    def respond(view: View, answer: ContextAnswer) -> Response:
        headers = None
        if answer.retry_after_s is not None:
            headers = {"Retry-After": str(max(1, math.ceil(answer.retry_after_s)))}
        return view.bytes(answer.body, content_type="application/json", status=answer.status, headers=headers)

    @worker.app.page("/cases/{case_id}/context")
    class CaseContext(View):
        async def get(self, request: Request, case_id: str) -> Response:
            unusable = unusable_case_id(case_id)
            if unusable is not None:
                counters.inc("invalid_id")
                return respond(self, error_answer(400, "INVALID_REQUEST", unusable, "invalid_id"))
            try:
                answer, served = await cache.get(case_id)
            except Exception:
                counters.inc("failed")
                log.exception("GET /cases/%s/context failed", case_id)
                message = "the worker failed to fetch the case's context; see its log"
                return respond(self, error_answer(500, "INTERNAL_ERROR", message, "failed"))
            counters.inc(served.value)
            return respond(self, answer)

    @worker.app.page("/stats/case-context")
    class Stats(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "data": {**counters.as_dict(), "cached": len(cache)}})

    worker.metrics.add(
        "case_context",
        "GET /cases/{id}/context requests by how they were served, and Offload's answers by kind",
        counters.as_dict,
    )
    return Feature("case_context", {"caseContext": counters})
