"""When each open case is next checked with Offload: pure rules, no I/O, no clock.

A case changes at Offload mostly right after something we can see coming: an answer we delivered (the
worker reads it and replies, completes or asks again), its creation (the first email goes out) and
Offload's own ``nextActionAt`` (a follow-up is sent, or the attempts run out and the case fails). Those
moments get a check soon after (the *hints*). Between them a case can still move (a counterparty
replies whenever it likes), so an open case is also checked on a backoff: ``STALE_S`` after its last
event, then each quiet check waits ``BACKOFF_FACTOR`` times longer, up to ``MAX_INTERVAL_S``. Any event
starts the backoff again.

A case whose next move a hint already covers gets no backoff checks: one waiting for an answer to its
question cannot move until it is answered (our answer brings a hint), and one whose ``nextActionAt`` is
still ahead is checked just after it. Such a case is checked only every ``SAFETY_INTERVAL_S`` besides,
for the moves no hint foresees (an answer given outside the bridge, a reply before the next follow-up);
those safety checks are marked ``covered`` and go last when the budget is short. The early backoff
checks they replace rarely find anything, and the calls saved go to the checks likely to find news.

Every wait is varied by up to +-``JITTER`` of itself, so cases created in one burst do not come due in
one burst forever. The variation is a hash of the case and the time, not a random draw: the fold must
give the same schedule when it replays an event after a crash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from offload_bridge.schemas.answers import Outcome
from offload_bridge.schemas.case_state import AnswerRecord, CaseState, CheckSchedule
from offload_bridge.schemas.offload_case import OffloadCase
from offload_bridge.settings import Settings

# The event the case-request feature publishes for a case it created.
CASE_CREATED = "case.created"

# What an answer record says once Offload has our answer to a question.
_ANSWERED = (Outcome.ACCEPTED.value, Outcome.DUPLICATE.value)


def waits_for_answer(
    status: str | None,
    question_id: str | None,
    question_status: str | None,
    answers: Mapping[str, AnswerRecord],
) -> bool:
    """A case asking a question still pending, that we have not answered: Offload cannot move it until
    someone answers."""
    if status != "INPUT_NEEDED" or question_id is None or question_status != "PENDING":
        return False
    answer = answers.get(question_id)
    return answer is None or answer.outcome not in _ANSWERED


def state_waits_for_answer(state: CaseState) -> bool:
    """``waits_for_answer`` by our own state of the case (the fold)."""
    question = state.inputRequest
    return waits_for_answer(
        state.status,
        question.id if question is not None else None,
        question.status if question is not None else None,
        state.answers,
    )


def offload_waits_for_answer(offload: OffloadCase, ours: CaseState | None) -> bool:
    """``waits_for_answer`` by what a check just got from Offload, and the answers we delivered."""
    question = offload.inputRequest
    return waits_for_answer(
        offload.status,
        question.id if question is not None else None,
        question.status if question is not None else None,
        ours.answers if ours is not None else {},
    )


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
    safety_ms: int  # the wait between checks of a case a hint covers (OFFLOAD_RECONCILE_SAFETY_INTERVAL_S)

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
            safety_ms=round(settings.offload_reconcile_safety_interval_s * 1000),
        )

    def after_event(
        self,
        case_id: str,
        check: CheckSchedule | None,
        event_type: str,
        at: int,
        terminal: bool,
        waiting: bool = False,
    ) -> CheckSchedule | None:
        """An event of the case was folded at ``at``: the backoff starts again (None once terminal).
        ``waiting``: the case now waits for an answer to its question (``state_waits_for_answer``).

        Offload's nextActionAt from the last check is kept: it still says when Offload acts next.
        """
        if terminal:
            return None
        soon = at + self.after_create_ms if event_type == CASE_CREATED else None
        next_action_at = check.nextActionAt if check is not None else None
        checked_at = check.checkedAt if check is not None else None
        return self._schedule(case_id, at, self.first_ms, next_action_at, checked_at, waiting, soon)

    def after_answer(self, case_id: str, check: CheckSchedule | None, at: int) -> CheckSchedule | None:
        """We delivered an answer at ``at``: Offload is about to move the case. Checked soon, and the
        backoff starts again from ``first_ms``: if that first check comes too early to see the move, the
        next ones follow closely rather than after the long wait of a case that was waiting for us."""
        if not self.hints:
            return check
        soon = at + self.after_answer_ms
        if check is None:
            return CheckSchedule(dueAt=soon, intervalMs=self.first_ms, hinted=True)
        return check.model_copy(
            update={
                "dueAt": min(check.dueAt, soon),
                "intervalMs": self.first_ms,
                "hinted": True,
                "covered": False,
            }
        )

    def after_check(
        self,
        case_id: str,
        check: CheckSchedule | None,
        at: int,
        next_action_at: int | None,
        waiting: bool = False,
    ) -> CheckSchedule:
        """A check answered at ``at`` (``next_action_at``: Offload's, None when none is scheduled or the
        answer gave none; ``waiting``: the case Offload gave waits for an answer of ours,
        ``offload_waits_for_answer``). Nothing we did not know: wait longer. When the check did bring
        news, the event it publishes resets the backoff as it is folded.

        A step Offload scheduled that is due and not yet taken (its follow-ups run from an hourly cron)
        is about to be: the first check that finds it so starts the backoff again, as a hint. A hint set
        while the call was under way (an answer delivered meanwhile) is kept.
        """
        interval = self.first_ms if check is None else min(self.max_ms, round(check.intervalMs * self.factor))
        soon = None
        if self.hints and check is not None and check.hinted and check.dueAt > at:
            soon = check.dueAt
        if self.hints and next_action_at is not None and next_action_at <= at:
            last = check.checkedAt if check is not None else None
            if last is None or last < next_action_at:
                interval = self.first_ms
                due = at + self.wait(case_id, interval, at)
                soon = due if soon is None else min(soon, due)
        return self._schedule(case_id, at, interval, next_action_at, at, waiting, soon)

    def after_failed_check(self, case_id: str, check: CheckSchedule | None, at: int) -> CheckSchedule:
        """A check got no usable answer about the case (404, 403, an answer that is no case): back off
        as after a quiet check, hints aside, so a case Offload keeps refusing costs fewer and fewer calls.
        What the last answered check learnt is kept."""
        interval = self.first_ms if check is None else min(self.max_ms, round(check.intervalMs * self.factor))
        return CheckSchedule(
            dueAt=at + self.wait(case_id, interval, at),
            intervalMs=interval,
            nextActionAt=check.nextActionAt if check is not None else None,
            checkedAt=check.checkedAt if check is not None else None,
        )

    def wait(self, case_id: str, interval_ms: int, at: int) -> int:
        """``interval_ms`` varied by up to +-jitter of itself, the same for the same case and time."""
        if self.jitter == 0 or interval_ms == 0:
            return interval_ms
        digest = hashlib.blake2b(f"{case_id}@{at}".encode(), digest_size=8).digest()
        spread = int.from_bytes(digest, "big") / 2**64 * 2 - 1  # in [-1, 1)
        return max(0, round(interval_ms * (1 + self.jitter * spread)))

    def _schedule(
        self,
        case_id: str,
        at: int,
        interval: int,
        next_action_at: int | None,
        checked_at: int | None,
        waiting: bool,
        soon: int | None,
    ) -> CheckSchedule:
        """The next check from ``at``: the earliest hint (``soon``, just after Offload's next step), else
        the backoff's wait of ``interval``; or, when a hint covers the case's next move, the safety
        check's wait instead of the backoff's."""
        backoff = at + self.wait(case_id, interval, at)
        hints = [soon] if self.hints and soon is not None else []
        # Offload takes no step of its own while it waits for an answer: its nextActionAt says nothing then.
        after_step = next_action_at + self.after_next_action_ms if next_action_at is not None else None
        step_ahead = self.hints and after_step is not None and after_step > at and not waiting
        if step_ahead and after_step is not None:
            hints.append(after_step)
        covered = self.hints and (waiting or step_ahead)
        due = at + self.wait(case_id, self.safety_ms, at) if covered else backoff
        hinted = bool(hints) and min(hints) <= due
        if hinted:
            due, covered = min(hints), False
        return CheckSchedule(
            dueAt=due,
            intervalMs=interval,
            nextActionAt=next_action_at,
            checkedAt=checked_at,
            hinted=hinted,
            covered=covered,
        )
