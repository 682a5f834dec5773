"""Ask Offload for one case and say what the answer means for the reconciler."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import ValidationError

from offload_bridge.schemas.offload_case import OffloadCase
from offload_bridge.streams.offload_api import OffloadApi, OffloadUnreachable
from offload_bridge.streams.retry import RETRYABLE_STATUSES


class FetchKind(StrEnum):
    """What ``GET /cases/{id}`` gave the reconciler."""

    OK = "ok"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"  # 401 or 403: Offload refuses our key (counted and dead-lettered as one)
    THROTTLED = "throttled"  # back off, try again later
    INVALID = "invalid"


# What to check when Offload refuses the key: 401 is a key missing or unknown to Offload, 403 one it knows
# and refuses (inactive) or a case of another client.
_REFUSALS = {
    401: ("unauthorized", "OFFLOAD_API_KEY is missing or not a key Offload knows"),
    403: ("forbidden", "OFFLOAD_API_KEY is inactive, or the case belongs to another key's client"),
}


@dataclass(frozen=True)
class FetchResult:
    kind: FetchKind
    case: OffloadCase | None = None
    detail: str = ""
    retry_after_s: float | None = None
    http_status: int | None = None

    def describe(self) -> str:
        """What happened, for people: ``unauthorized: HTTP 401 ... (what to check)`` for a refused key,
        else the kind and the detail."""
        refusal = _REFUSALS.get(self.http_status or 0) if self.kind is FetchKind.FORBIDDEN else None
        if refusal is None:
            return f"{self.kind.value}: {self.detail}"
        label, check = refusal
        return f"{label}: {self.detail} ({check})"


async def fetch_case(api: OffloadApi, case_id: str) -> FetchResult:
    try:
        reply = await api.get_case(case_id)
    except OffloadUnreachable as error:
        return FetchResult(FetchKind.THROTTLED, detail=str(error))
    detail = f"HTTP {reply.status} {reply.error_code or ''} {reply.error_message}".strip()
    if reply.ok:
        if reply.data is None:
            return FetchResult(
                FetchKind.INVALID, detail=f"HTTP {reply.status} without a case in the envelope"
            )
        try:
            return FetchResult(FetchKind.OK, OffloadCase.model_validate(reply.data))
        except ValidationError as error:
            return FetchResult(FetchKind.INVALID, detail=f"not a case: {error.errors()[0]['msg']}")
    if reply.status == 404:
        return FetchResult(FetchKind.NOT_FOUND, detail=detail)
    if reply.status in (401, 403):
        return FetchResult(FetchKind.FORBIDDEN, detail=detail, http_status=reply.status)
    if reply.status in RETRYABLE_STATUSES or reply.status >= 500:
        return FetchResult(FetchKind.THROTTLED, detail=detail, retry_after_s=reply.retry_after_s)
    return FetchResult(FetchKind.INVALID, detail=detail)
