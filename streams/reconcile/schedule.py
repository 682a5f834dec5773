"""When each open case is next checked with Offload: pure rules, no I/O, no clock.

A case changes at Offload mostly right after something we can see coming: an answer we delivered (the
worker reads it and replies, completes or asks again), its creation (the first email goes out) and
Offload's own ``nextActionAt`` (a follow-up is sent, or the attempts run out and the case fails). Those
moments get a check soon after (the *hints*). Between them a case can still move (a counterparty
replies whenever it likes), so every open case is also checked on a backoff: ``STALE_S`` after its last
event, then each quiet check waits ``BACKOFF_FACTOR`` times longer, up to ``MAX_INTERVAL_S``. Any event
starts the backoff again.

Every wait is varied by up to +-``JITTER`` of itself, so cases created in one burst do not come due in
one burst forever. The variation is a hash of the case and the time, not a random draw: the fold must
give the same schedule when it replays an event after a crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from offload_bridge.schemas.case_state import CheckSchedule
from offload_bridge.settings import Settings

# The event the case-request feature publishes for a case it created.
CASE_CREATED = "case.created"


@dataclass(frozen=True)
class SchedulePolicy:
    first_ms: int  # the first wait after a change (OFFLOAD_RECONCILE_STALE_S)
    factor: float
    max_ms: int
    jitter: float
    hints: bool
    after_answer_ms: int
    after_create_ms: int
    after_next_action_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulePolicy:
        return cls(
            first_ms=round(settings.offload_reconcile_stale_s * 1000),
            factor=settings.offload_reconcile_backoff_factor,
            max_ms=round(settings.offload_reconcile_max_interval_s * 1000),
            jitter=settings.offload_reconcile_jitter,
            hints=settings.offload_reconcile_hints,
            after_answer_ms=round(settings.offload_reconcile_after_answer_s * 1000),
            after_create_ms=round(settings.offload_reconcile_after_create_s * 1000),
            after_next_action_ms=round(settings.offload_reconcile_after_next_action_s * 1000),
        )

    def after_event(
        self, case_id: str, check: CheckSchedule | None, event_type: str, at: int, terminal: bool
    ) -> CheckSchedule | None:
        """An event of the case was folded at ``at``: the backoff starts again (None once terminal).

        Offload's nextActionAt from the last check is kept: it still says when Offload acts next.
        """
        if terminal:
            return None
        interval = self.first_ms
        due, hinted = at + self.wait(case_id, interval, at), False
        if self.hints and event_type == CASE_CREATED and at + self.after_create_ms < due:
            due, hinted = at + self.after_create_ms, True
        next_action_at = check.nextActionAt if check is not None else None
        checked_at = check.checkedAt if check is not None else None
        due, hinted = self._hinted(due, hinted, next_action_at, at)
        return CheckSchedule(
            dueAt=due, intervalMs=interval, nextActionAt=next_action_at, checkedAt=checked_at, hinted=hinted
        )

    def after_answer(self, case_id: str, check: CheckSchedule | None, at: int) -> CheckSchedule | None:
        """We delivered an answer at ``at``: Offload is about to move the case. Checked soon, and the
        backoff starts again from ``first_ms``: if that first check comes too early to see the move, the
        next ones follow closely rather than after the long wait of a case that was waiting for us."""
        if not self.hints:
            return check
        soon = at + self.after_answer_ms
        if check is None:
            return CheckSchedule(dueAt=soon, intervalMs=self.first_ms, hinted=True)
        if check.dueAt <= soon:
            return check.model_copy(update={"intervalMs": self.first_ms})
        return check.model_copy(update={"dueAt": soon, "intervalMs": self.first_ms, "hinted": True})

    def after_check(
        self, case_id: str, check: CheckSchedule | None, at: int, next_action_at: int | None
    ) -> CheckSchedule:
        """A check answered at ``at`` (``next_action_at``: Offload's, None when none is scheduled or the
        answer gave none). Nothing we did not know: wait longer. When the check did bring news, the event
        it publishes resets the backoff as it is folded."""
        interval = self.first_ms if check is None else min(self.max_ms, round(check.intervalMs * self.factor))
        due, hinted = self._hinted(at + self.wait(case_id, interval, at), False, next_action_at, at)
        return CheckSchedule(
            dueAt=due, intervalMs=interval, nextActionAt=next_action_at, checkedAt=at, hinted=hinted
        )

    def after_failed_check(self, case_id: str, check: CheckSchedule | None, at: int) -> CheckSchedule:
        """A check got no usable answer about the case (404, 403, an answer that is no case): back off
        as after a quiet check, so a case Offload keeps refusing costs fewer and fewer calls."""
        next_action_at = check.nextActionAt if check is not None else None
        return self.after_check(case_id, check, at, next_action_at)

    def wait(self, case_id: str, interval_ms: int, at: int) -> int:
        """``interval_ms`` varied by up to +-jitter of itself, the same for the same case and time."""
        if self.jitter == 0 or interval_ms == 0:
            return interval_ms
        digest = hashlib.blake2b(f"{case_id}@{at}".encode(), digest_size=8).digest()
        spread = int.from_bytes(digest, "big") / 2**64 * 2 - 1  # in [-1, 1)
        return max(0, round(interval_ms * (1 + self.jitter * spread)))

    def _hinted(self, due: int, hinted: bool, next_action_at: int | None, at: int) -> tuple[int, bool]:
        """``due``, or sooner: just after Offload's next scheduled step when that is still to come (and
        then hinted)."""
        if not self.hints or next_action_at is None:
            return due, hinted
        after = next_action_at + self.after_next_action_ms
        return (after, True) if at < after < due else (due, hinted)
