"""When a case is next checked: the schedule's rules, each with the setting that turns it off."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from offload_bridge.schemas.answers import Outcome
from offload_bridge.schemas.case_state import AnswerRecord, CaseState, CheckSchedule, InputRequest
from offload_bridge.schemas.offload_case import OffloadCase
from offload_bridge.settings import Settings
from offload_bridge.streams.reconcile.schedule import (
    CASE_CREATED,
    SchedulePolicy,
    offload_waits_for_answer,
    state_waits_for_answer,
    waits_for_answer,
)

MINUTE = 60_000
HOUR = 60 * MINUTE


def policy(**changes: Any) -> SchedulePolicy:
    return SchedulePolicy.from_settings(Settings(**{"offload_reconcile_jitter": 0.0, **changes}))


def test_an_event_puts_the_first_check_stale_s_ahead_and_a_terminal_one_none() -> None:
    rules = policy()
    check = rules.after_event("c1", None, "case.input_needed", at=HOUR, terminal=False)
    assert check == CheckSchedule(dueAt=HOUR + 10 * MINUTE, intervalMs=10 * MINUTE)
    assert rules.after_event("c1", check, "case.completed", at=2 * HOUR, terminal=True) is None


def test_quiet_checks_multiply_the_wait_up_to_the_cap_and_an_event_starts_it_again() -> None:
    rules = policy()
    check = rules.after_event("c1", None, "case.input_needed", at=0, terminal=False)
    assert check is not None
    waits = []
    for _ in range(6):
        at = check.dueAt
        check = rules.after_check("c1", check, at, next_action_at=None)
        waits.append((check.dueAt - at) // MINUTE)
    assert waits == [30, 90, 270, 480, 480, 480]  # minutes: 3 times longer each, up to the 8 h cap
    again = rules.after_event("c1", check, "case.input_needed", at=check.dueAt, terminal=False)
    assert again is not None and again.dueAt - check.dueAt == 10 * MINUTE


def test_a_factor_of_one_checks_every_stale_s_like_a_sweep() -> None:
    rules = policy(offload_reconcile_backoff_factor=1.0, offload_reconcile_stale_s=300)
    check = rules.after_check("c1", None, 0, None)
    for _ in range(5):
        nxt = rules.after_check("c1", check, check.dueAt, None)
        assert nxt.dueAt - check.dueAt == 5 * MINUTE
        check = nxt


def test_offloads_next_action_brings_the_check_to_just_after_it_and_is_kept_through_events() -> None:
    rules = policy()
    check = rules.after_check("c1", None, at=0, next_action_at=3 * MINUTE)
    assert check.dueAt == 3 * MINUTE + 30_000 and check.nextActionAt == 3 * MINUTE
    # An event folded meanwhile starts the backoff again but still checks right after Offload acts.
    after = rules.after_event("c1", check, "case.input_needed", at=MINUTE, terminal=False)
    assert after is not None and after.dueAt == 3 * MINUTE + 30_000
    # Once that moment has passed, it no longer hurries anything: the backoff decides.
    moved = rules.after_event("c1", check, "case.input_needed", at=4 * MINUTE, terminal=False)
    assert moved is not None and moved.dueAt == 14 * MINUTE and not moved.hinted


def test_an_answer_and_a_creation_bring_the_check_close() -> None:
    rules = policy()
    created = rules.after_event("c1", None, CASE_CREATED, at=0, terminal=False)
    assert created is not None and created.dueAt == MINUTE
    waiting = rules.after_check("c1", created, at=5 * HOUR, next_action_at=None)
    answered = rules.after_answer("c1", waiting, at=5 * HOUR + MINUTE)
    assert answered is not None and answered.dueAt == 5 * HOUR + 2 * MINUTE
    # The backoff starts again: a first check too early to see the move is followed closely.
    assert waiting.intervalMs > 10 * MINUTE and answered.intervalMs == 10 * MINUTE


def test_without_hints_only_the_backoff_decides() -> None:
    rules = policy(offload_reconcile_hints=False)
    created = rules.after_event("c1", None, CASE_CREATED, at=0, terminal=False)
    assert created is not None and created.dueAt == 10 * MINUTE
    assert rules.after_answer("c1", created, at=MINUTE) == created
    assert rules.after_check("c1", None, at=0, next_action_at=MINUTE).dueAt == 10 * MINUTE


@hypothesis_settings(deadline=None, derandomize=True, database=None)
@given(case_id=st.text(min_size=1, max_size=40), at=st.integers(0, 2**42), jitter=st.floats(0.0, 0.9))
def test_jitter_stays_within_its_share_and_is_the_same_for_the_same_case_and_time(
    case_id: str, at: int, jitter: float
) -> None:
    rules = policy(offload_reconcile_jitter=jitter)
    wait = rules.wait(case_id, 10 * MINUTE, at)
    assert abs(wait - 10 * MINUTE) <= jitter * 10 * MINUTE + 1
    assert wait == rules.wait(case_id, 10 * MINUTE, at)


def test_jitter_spreads_cases_created_together() -> None:
    rules = policy(offload_reconcile_jitter=0.1)
    dues = {rules.wait(f"case-{n}", 10 * MINUTE, 0) for n in range(200)}
    assert len(dues) > 150 and max(dues) - min(dues) > MINUTE


def test_a_quiet_case_costs_about_three_checks_a_day_by_default() -> None:
    """The docs' budget sizing: after the first day's ramp, a case that never changes is checked every 8 h."""
    rules = SchedulePolicy.from_settings(Settings())
    check = rules.after_event("c1", None, "case.input_needed", at=0, terminal=False)
    assert check is not None
    checks = []
    while check.dueAt < 8 * 24 * HOUR:
        checks.append(check.dueAt)
        check = rules.after_check("c1", check, check.dueAt, next_action_at=None)
    first_day = sum(1 for at in checks if at < 24 * HOUR)
    later_days = [
        sum(1 for at in checks if day * 24 * HOUR <= at < (day + 1) * 24 * HOUR) for day in range(1, 8)
    ]
    assert first_day <= 8 and all(2 <= count <= 4 for count in later_days), (first_day, later_days)


def test_a_due_time_a_hint_set_is_marked_so_the_worker_spends_a_short_budget_there_first() -> None:
    rules = policy()
    assert rules.after_event("c1", None, CASE_CREATED, at=0, terminal=False).hinted  # type: ignore[union-attr]
    quiet = rules.after_event("c1", None, "case.input_needed", at=0, terminal=False)
    assert quiet is not None and not quiet.hinted
    assert rules.after_answer("c1", quiet, at=MINUTE).hinted  # type: ignore[union-attr]
    assert rules.after_check("c1", quiet, at=0, next_action_at=MINUTE).hinted
    assert not rules.after_check("c1", quiet, at=0, next_action_at=None).hinted


# --- a case whose next move a hint covers gets no backoff checks -------------------------------------------


def test_a_case_waiting_for_our_answer_gets_only_safety_checks_until_the_answer_brings_a_hint() -> None:
    rules = policy()
    asked = rules.after_event("c1", None, "case.input_needed", at=HOUR, terminal=False, waiting=True)
    # No 10, 30, 90, 270 minute checks: it cannot move until answered. A safety check 8 h on.
    assert asked == CheckSchedule(dueAt=9 * HOUR, intervalMs=10 * MINUTE, covered=True)
    quiet = rules.after_check("c1", asked, at=9 * HOUR, next_action_at=None, waiting=True)
    assert quiet.dueAt == 17 * HOUR and quiet.covered and not quiet.hinted
    answered = rules.after_answer("c1", quiet, at=10 * HOUR)
    assert answered is not None
    assert (answered.dueAt, answered.intervalMs, answered.hinted, answered.covered) == (
        10 * HOUR + MINUTE, 10 * MINUTE, True, False,
    )  # fmt: skip
    # Answered, Offload still shows the question (resolved) and no step: the backoff again, from the start.
    after = rules.after_check("c1", answered, at=answered.dueAt, next_action_at=None, waiting=False)
    assert after.dueAt - answered.dueAt == 30 * MINUTE and not after.covered


def test_a_case_whose_next_step_offload_scheduled_is_checked_just_after_it_and_only_safely_before() -> None:
    rules = policy()
    # The step 3 h ahead: one check just after it, none on the backoff before.
    near = rules.after_check("c1", None, at=0, next_action_at=3 * HOUR)
    assert (near.dueAt, near.hinted, near.covered) == (3 * HOUR + 30_000, True, False)
    # 70 h ahead (a follow-up): a safety check every 8 h for a reply nobody scheduled, then the hint.
    check = rules.after_check("c1", None, at=0, next_action_at=70 * HOUR)
    dues = [check.dueAt]
    while not check.hinted:
        check = rules.after_check("c1", check, at=check.dueAt, next_action_at=70 * HOUR)
        dues.append(check.dueAt)
    assert dues == [8 * HOUR * n for n in range(1, 9)] + [70 * HOUR + 30_000]
    # An event that leaves the step ahead keeps the case covered: still no backoff.
    event = rules.after_event("c1", near, "case.running", at=HOUR, terminal=False)
    assert event is not None and event.dueAt == 3 * HOUR + 30_000


def test_a_step_found_overdue_is_checked_again_soon_once_then_on_the_backoff() -> None:
    """Offload's follow-ups run from an hourly cron: just after nextActionAt the step may not be taken."""
    rules = policy()
    scheduled = rules.after_check("c1", None, at=0, next_action_at=3 * HOUR)
    overdue = rules.after_check("c1", scheduled, at=scheduled.dueAt, next_action_at=3 * HOUR)
    assert overdue.dueAt - scheduled.dueAt == 10 * MINUTE and overdue.hinted
    still = rules.after_check("c1", overdue, at=overdue.dueAt, next_action_at=3 * HOUR)
    assert still.dueAt - overdue.dueAt == 30 * MINUTE and not still.hinted and not still.covered


def test_a_hint_set_while_a_check_was_under_way_is_kept() -> None:
    rules = policy()
    waiting = rules.after_event("c1", None, "case.input_needed", at=0, terminal=False, waiting=True)
    answered = rules.after_answer("c1", waiting, at=HOUR)  # delivered while the GET was in flight
    assert answered is not None
    # The GET, sent before the answer, still saw the question pending.
    check = rules.after_check("c1", answered, at=HOUR + 1_000, next_action_at=None, waiting=True)
    assert check.dueAt == HOUR + MINUTE and check.hinted


def test_a_failed_check_backs_off_and_keeps_what_the_last_answer_taught() -> None:
    rules = policy()
    learnt = rules.after_check("c1", None, at=0, next_action_at=HOUR)
    failed = rules.after_failed_check("c1", learnt, at=2 * MINUTE)
    assert failed == CheckSchedule(
        dueAt=2 * MINUTE + 30 * MINUTE, intervalMs=30 * MINUTE, nextActionAt=HOUR, checkedAt=0
    )


def test_without_hints_nothing_is_covered_and_the_backoff_runs_as_before() -> None:
    rules = policy(offload_reconcile_hints=False, offload_reconcile_backoff_factor=1.0)
    asked = rules.after_event("c1", None, "case.input_needed", at=0, terminal=False, waiting=True)
    assert asked == CheckSchedule(dueAt=10 * MINUTE, intervalMs=10 * MINUTE)
    check = rules.after_check("c1", asked, at=10 * MINUTE, next_action_at=72 * HOUR, waiting=True)
    assert (check.dueAt, check.covered, check.hinted) == (20 * MINUTE, False, False)


def test_the_safety_interval_is_a_setting() -> None:
    rules = policy(offload_reconcile_safety_interval_s=24 * 3600)
    asked = rules.after_event("c1", None, "case.input_needed", at=0, terminal=False, waiting=True)
    assert asked is not None and asked.dueAt == 24 * HOUR


def _state(
    status: str, question: str | None = None, question_status: str = "PENDING", **answers: str
) -> CaseState:
    return CaseState(
        caseId="c1",
        status=status,
        firstSeenAt=0,
        updatedAt=0,
        inputRequest=InputRequest(id=question, question="?", status=question_status) if question else None,
        answers={qid: AnswerRecord(answerId="a", outcome=outcome, at=0) for qid, outcome in answers.items()},
    )


def test_a_case_waits_for_an_answer_only_while_its_question_is_pending_and_not_answered_by_us() -> None:
    assert state_waits_for_answer(_state("INPUT_NEEDED", "q1"))
    assert not state_waits_for_answer(_state("INPUT_NEEDED", "q1", "RESOLVED"))
    assert not state_waits_for_answer(_state("INPUT_NEEDED", "q1", q1=Outcome.ACCEPTED.value))
    assert not state_waits_for_answer(_state("INPUT_NEEDED", "q1", q1=Outcome.DUPLICATE.value))
    # Our answer was refused, or went to an older question: still waiting.
    assert state_waits_for_answer(_state("INPUT_NEEDED", "q1", q1=Outcome.CONFLICT.value))
    assert state_waits_for_answer(_state("INPUT_NEEDED", "q2", q1=Outcome.ACCEPTED.value))
    assert not state_waits_for_answer(_state("RUNNING"))
    assert not state_waits_for_answer(_state("INPUT_NEEDED"))  # no question known
    assert not waits_for_answer("COMPLETED", "q1", "PENDING", {})
    offload = OffloadCase.model_validate(
        {"caseId": "c1", "status": "INPUT_NEEDED", "updatedAt": 5,
         "inputRequest": {"id": "q1", "question": "?", "status": "PENDING"}}
    )  # fmt: skip
    assert offload_waits_for_answer(offload, None)
    assert not offload_waits_for_answer(offload, _state("RUNNING", q1=Outcome.ACCEPTED.value))


Step = tuple[str, int, bool, int | None]  # (what, minutes later, waiting, Offload's nextActionAt in minutes)


@hypothesis_settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["event", "created", "answer", "check", "failed"]),
            st.integers(0, 3 * 24 * 60),
            st.booleans(),
            st.one_of(st.none(), st.integers(0, 10 * 24 * 60)),
        ),
        max_size=40,
    ),
    hints=st.booleans(),
)
def test_nothing_is_lost_every_open_case_is_due_within_the_longest_wait(
    steps: list[Step], hints: bool
) -> None:
    """Whatever happens, an open case's next check is at most the schedule's longest wait away (with its
    jitter): every case is checked again, however a hint covers it."""
    rules = SchedulePolicy.from_settings(Settings(offload_reconcile_hints=hints))
    longest = max(rules.max_ms, rules.safety_ms) * (1 + rules.jitter) + 1
    at = 0
    check: CheckSchedule | None = None
    for what, later, waiting, next_action in steps:
        at += later * MINUTE
        next_action_at = None if next_action is None else next_action * MINUTE
        if what in ("event", "created"):
            kind = CASE_CREATED if what == "created" else "case.input_needed"
            check = rules.after_event("c1", check, kind, at, terminal=False, waiting=waiting)
        elif what == "answer":
            check = rules.after_answer("c1", check, at)
        elif what == "check":
            check = rules.after_check("c1", check, at, next_action_at, waiting)
        else:
            check = rules.after_failed_check("c1", check, at)
        if check is not None:
            assert check.dueAt <= at + longest, (what, check)
            assert not (check.hinted and check.covered)
