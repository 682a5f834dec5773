"""When a case is next checked: the schedule's rules, each with the setting that turns it off."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from offload_bridge.schemas.case_state import CheckSchedule
from offload_bridge.settings import Settings
from offload_bridge.streams.reconcile.schedule import CASE_CREATED, SchedulePolicy

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
    late = rules.after_check("c1", check, at=4 * MINUTE, next_action_at=3 * MINUTE)
    assert late.dueAt == 4 * MINUTE + 30 * MINUTE
    # A next action further away than the backoff changes nothing.
    far = rules.after_check("c1", None, at=0, next_action_at=72 * HOUR)
    assert far.dueAt == 10 * MINUTE


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
