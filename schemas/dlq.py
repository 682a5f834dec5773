"""The headers of a dead letter, the same on every DLQ (``answers.dlq``, ``case-requests.dlq``).

The value of a dead letter is the original record byte for byte, under its own key; what happened to it
is in these headers (names: ``DlqHeader``), so ``offload-bridge dlq list|redrive`` reads every queue alike.
"""

from __future__ import annotations

from offload_bridge.schemas.answers import DlqHeader, now_ms


def dlq_headers(
    *,
    outcome: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    error_code: str | None = None,
    http_status: int | None = None,
    answer_id: str | None = None,
    attempt: int | None = None,
    at_ms: int | None = None,
) -> list[tuple[str, bytes]]:
    """Kafka headers of the dead letter of the record at ``topic``/``partition``/``offset``.

    ``outcome`` is the terminal outcome that sent it there (e.g. ``dead_lettered``, ``rejected``,
    ``unknown``); an absent error code or HTTP status is an empty header, so every dead letter has the
    same names. ``answer_id`` and ``attempt`` are the answers' own.
    """
    headers: dict[str, str] = {
        DlqHeader.OUTCOME: outcome,
        DlqHeader.ERROR: error,
        DlqHeader.ERROR_CODE: error_code or "",
        DlqHeader.HTTP_STATUS: "" if http_status is None else str(http_status),
    }
    if answer_id is not None:
        headers[DlqHeader.ANSWER_ID] = answer_id
    if attempt is not None:
        headers[DlqHeader.ATTEMPT] = str(attempt)
    headers[DlqHeader.ORIGINAL_TOPIC] = topic
    headers[DlqHeader.ORIGINAL_PARTITION] = str(partition)
    headers[DlqHeader.ORIGINAL_OFFSET] = str(offset)
    headers[DlqHeader.DEAD_LETTERED_AT] = str(now_ms() if at_ms is None else at_ms)
    return [(str(name), value.encode()) for name, value in headers.items()]
