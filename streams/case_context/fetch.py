"""Ask Offload for a case with its transcript, and say what the worker answers: Offload's case with the
time it was fetched, or an error in Offload's envelope that tells a page what to do.

- 200 with a case: 200 ``{"ok": true, "data": {...the case as received, "fetchedAt": unix ms}}``;
- 404: 404 ``CASE_NOT_FOUND``;
- 429 or 5xx (a transcript Offload fails to read is a bare 500), no answer in time, unreachable, or the
  worker's calls paused after a pushback: 503 ``OFFLOAD_UNAVAILABLE`` (with ``Retry-After`` when known),
  try again shortly;
- 401, 403, another 4xx, a 2xx without a case: 502 ``OFFLOAD_ERROR``, asking again will not help (the
  message says what to check).

Nothing here raises for what Offload does: every answer, or its absence, becomes one of these.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from offload_bridge.schemas.answers import now_ms
from offload_bridge.streams.case_context.cache import ContextAnswer
from offload_bridge.streams.offload_api import OffloadApi, OffloadReply, OffloadUnreachable

MAX_CASE_ID_CHARS = 256
OFFLOAD_UNAVAILABLE = "OFFLOAD_UNAVAILABLE"
OFFLOAD_ERROR = "OFFLOAD_ERROR"

# What to check when Offload refuses: 401 is a key missing or unknown to Offload, 403 one it knows and
# refuses (inactive), or a case of another client.
_REFUSED = {
    401: "check the worker's OFFLOAD_API_KEY",
    403: "the worker's key is inactive, or the case belongs to another client",
}


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def error_answer(
    status: int, code: str, message: str, kind: str, retry_after_s: float | None = None
) -> ContextAnswer:
    body = _json({"ok": False, "error": {"code": code, "message": message}})
    return ContextAnswer(status, body, kind, retry_after_s)


def unusable_case_id(case_id: str) -> str | None:
    """Why a case id cannot be asked about, or None. Any other id goes to Offload as one quoted path
    segment, so nothing in it changes the path."""
    if not case_id.strip():
        return "the case id is blank"
    if len(case_id) > MAX_CASE_ID_CHARS:
        return f"the case id is longer than {MAX_CASE_ID_CHARS} characters"
    if not case_id.isprintable():
        return "the case id has control characters"
    return None


def _described(reply: OffloadReply) -> str:
    """``HTTP 500 INTERNAL_ERROR: message``, or the start of a bare answer's text."""
    code = f" {reply.error_code}" if reply.error_code else ""
    message = f": {reply.error_message}" if reply.error_message else ""
    return f"HTTP {reply.status}{code}{message}"


async def fetch_context(api: OffloadApi, case_id: str, within_s: float) -> ContextAnswer:
    """Offload's ``GET /cases/{id}?includeTranscript=true``, answered within ``within_s`` seconds (the
    wait for the worker's limits included)."""
    paused_s = api.limits.paused_s
    if paused_s > 0:
        # Offload just pushed back: a person's page should not wait out the pause, nor add to the load.
        message = f"Offload pushed back; the worker calls it again in {math.ceil(paused_s)} s"
        return error_answer(503, OFFLOAD_UNAVAILABLE, message, "unavailable", paused_s)
    try:
        async with asyncio.timeout(within_s):
            reply = await api.get_case(case_id, include_transcript=True)
    except TimeoutError:
        message = f"Offload did not answer within {within_s:g} s"
        return error_answer(503, OFFLOAD_UNAVAILABLE, message, "unavailable")
    except OffloadUnreachable as error:
        message = f"Offload could not be reached ({error})"
        return error_answer(503, OFFLOAD_UNAVAILABLE, message, "unavailable")
    return answer_of(reply, case_id, now_ms())


def answer_of(reply: OffloadReply, case_id: str, fetched_at: int) -> ContextAnswer:
    """What the worker answers for Offload's ``reply`` about ``case_id``, received at ``fetched_at``."""
    said = _described(reply)
    if reply.ok:
        if reply.data is None or not isinstance(reply.data.get("caseId"), str):
            message = f"Offload answered {said} without a case"
            return error_answer(502, OFFLOAD_ERROR, message, "invalid")
        data = {**reply.data, "fetchedAt": fetched_at}
        return ContextAnswer(200, _json({"ok": True, "data": data}), "found")
    if reply.status == 404:
        return error_answer(404, "CASE_NOT_FOUND", f"Offload knows no case {case_id}", "not_found")
    if reply.status == 429 or reply.status >= 500:
        message = f"Offload answered {said}; try again shortly"
        return error_answer(503, OFFLOAD_UNAVAILABLE, message, "unavailable", reply.retry_after_s)
    check = _REFUSED.get(reply.status)
    if check is not None:
        return error_answer(502, OFFLOAD_ERROR, f"Offload refused: {said} ({check})", "refused")
    return error_answer(502, OFFLOAD_ERROR, f"Offload answered {said}", "invalid")
