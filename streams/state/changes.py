"""Who hears of the case-state table's changes: a hub the fold's writer publishes to (a leaf module)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from offload_bridge.schemas.case_state import CaseRecord

log = logging.getLogger(__name__)

# Called with the caseId, the table partition it was written to and the record written.
CaseChangeListener = Callable[[str, int, CaseRecord], None]


class CaseChanges:
    """Tells listeners about every record written to the case-state table, once it is written.

    ``StateWriter`` publishes each change of a batch right after the batch reached the local store, so
    listeners see the changes in the table's own order and none is missed. Writes that bypass the
    writer (changelog recovery, standby copies) are not told: a listener rebuilds from the table after a
    rebalance instead.
    """

    def __init__(self) -> None:
        self._listeners: list[CaseChangeListener] = []

    def subscribe(self, listener: CaseChangeListener) -> None:
        self._listeners.append(listener)

    def publish(self, case_id: str, partition: int, record: CaseRecord) -> None:
        for listener in self._listeners:
            try:
                listener(case_id, partition, record)
            except Exception:
                # The write has happened; a listener's bug must not keep the writer from its own
                # outputs (the case-state record after it), nor the other listeners from the change.
                log.exception("case %s: a listener of case changes failed", case_id)
