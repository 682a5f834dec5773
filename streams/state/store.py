"""What the features other than the fold need of the case-state table: read a case, save a change,
move its next check.

The fold's ``StateWriter`` implements it in the worker (reads see its held batches; a save is written
with the open batch at once); the in-process tests use a dict.
"""

from __future__ import annotations

from typing import Protocol

from offload_bridge.schemas.case_state import CaseRecord, CheckSchedule


class CaseStore(Protocol):
    def get(self, case_id: str) -> CaseRecord | None:
        """The case's newest record, None when no event of it was folded."""

    async def save(self, case_id: str, record: CaseRecord) -> None:
        """Replace the case's record; returns once it is in the changelog and on case-state."""

    def reschedule(self, case_id: str, check: CheckSchedule | None) -> None:
        """Set the case's next reconcile check (written soon, with the next batch); no record: nothing."""
