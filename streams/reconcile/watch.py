"""Cases created outside the bridge: a ``case-watch`` record names one, the worker fetches it from Offload
at once and from then on keeps it reconciled like any other.

The fetch goes through the reconciler's check (the same gate, budget and pause); where Offload knows more
than we do, which for an unknown case is everything, its synthesized event goes into ``case-events`` and
the fold creates the case with a schedule. A watch whose case Offload does not know or refuses, and a
record that is no watch request, go to ``case-watch.dlq`` with the reason; one that Offload throttles is
asked again once the worker's pause is over, holding its partition meanwhile (watches are few, and the
record must not be acknowledged before the case is known).

Where the record sits does not matter: the event is produced under the caseId, so the fold of the
partition that owns the case creates it, whichever worker fetched it.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from offload_bridge.schemas.case_watch import CaseWatch
from offload_bridge.schemas.dlq import dlq_headers
from offload_bridge.schemas.events import TERMINAL_STATUSES
from offload_bridge.schemas.validation import describe_validation_error
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.messages import position
from offload_bridge.streams.reconcile.fetch import FetchKind
from offload_bridge.streams.reconcile.sweep import Reconciler

log = logging.getLogger("offload_bridge.streams.reconcile.watch")

WATCH_COUNTS = (
    "watched",  # fetched from Offload (new to us, or known and open)
    "known_terminal",  # already COMPLETED or FAILED here: nothing can change, not fetched
    "dead_lettered",  # not a watch request, or Offload does not know or refuses the case
    "failed",  # an unexpected error (logged)
)

# What a fetch that got no case means for the watch request, as its dead letter's outcome.
_LETTER_OUTCOMES = {
    FetchKind.NOT_FOUND: "not_found",
    FetchKind.FORBIDDEN: "forbidden",
    FetchKind.INVALID: "invalid",
}


def watch_counts() -> Counters:
    return Counters(WATCH_COUNTS)


class CaseWatching:
    """Handles one ``case-watch`` record at a time; ``dlq``: the Faust topic of ``case-watch.dlq``."""

    def __init__(self, reconciler: Reconciler, dlq: Any, counters: Counters) -> None:
        self.reconciler = reconciler
        self.dlq = dlq
        self.counters = counters

    async def on_watch(self, message: Any) -> None:
        try:
            if message.value is None:
                raise ValueError("record has no value")
            watch = CaseWatch.model_validate_json(message.value)
        except ValidationError as error:
            await self._dead_letter(message, "rejected", describe_validation_error(error, first_only=True))
            return
        except ValueError as error:
            await self._dead_letter(message, "rejected", str(error))
            return
        case_id = watch.caseId
        record = self.reconciler.store.get(case_id)
        if record is not None and record.state.status in TERMINAL_STATUSES:
            self.counters.inc("known_terminal")
            return
        # Asked again while Offload throttles: the check waits for the worker's pause each time.
        while (kind := await self.reconciler.check_now(case_id)) is FetchKind.THROTTLED:
            pass
        if kind is FetchKind.OK:
            self.counters.inc("watched")
            log.info("case-watch: %s fetched (asked by %s)", case_id, watch.requestedBy or "someone")
            return
        outcome = _LETTER_OUTCOMES.get(kind, kind.value)
        await self._dead_letter(message, outcome, f"GET /cases/{case_id}: {outcome.replace('_', ' ')}")

    async def failed(self, message: Any, error: Exception) -> None:
        self.counters.inc("failed")
        log.exception("%s[%s]@%s: a watch request failed, skipped", *position(message))

    async def _dead_letter(self, message: Any, outcome: str, reason: str) -> None:
        self.counters.inc("dead_lettered")
        topic, partition, offset = position(message)
        log.warning("case-watch %s[%s]@%s: %s: %s", topic, partition, offset, outcome, reason)
        headers = dlq_headers(outcome=outcome, error=reason, topic=topic, partition=partition, offset=offset)
        sent = await self.dlq.send(key=message.key, value=message.value, headers=headers)
        await sent
