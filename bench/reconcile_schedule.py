"""How many ``GET /cases/{id}`` calls the reconcile schedule costs per open case and day, for a mix of cases
that live as Offload's do. A model, not a run: each case's checks follow the worker's own
``SchedulePolicy`` (the code the worker runs), at the moments it gives, against a timeline of what Offload
does to the case; no broker, no HTTP. The end-to-end comparison of policies is ``bench.reconcile``.

The mix (Offload's defaults: ``followUpDelayHours`` 72, ``maxAttempts`` 3):

- ``replies``: the counterparty answers some time after the first email (exponential, mean 2 days; cases
  past the last follow-up fail instead) -> COMPLETED;
- ``asks``: a question after a while (mean 1 day), answered by a person (mean 4 h; an answer is a hint),
  then completed (mean 1 day) -> COMPLETED;
- ``silent``: no reply at all: follow-ups every 72 h, FAILED ``max_retries`` after the third attempt's wait.

Offload's ``nextActionAt`` (the next follow-up, or the failure after the last) is what a check learns; a
reply comes unannounced before it. Cases are created over the first ``--days`` and counted until all are
terminal; the figures are calls over the total open time, and how long after each update that Offload
sends a webhook for the next check comes (were the webhook lost, that check would repair it). The anchors:
a fixed 10-minute check, and every case checked in turn every 5.3 h (the old policy when a budget of 4.5
calls per case a day sets its pace).

Run: ``.venv/bin/python -m bench.reconcile_schedule [--cases 10000]``.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass

from offload_bridge.settings import Settings
from offload_bridge.streams.reconcile.schedule import CASE_CREATED, SchedulePolicy

HOUR = 3_600_000
DAY = 24 * HOUR
FOLLOW_UP = 72 * HOUR
MAX_ATTEMPTS = 3


@dataclass
class Timeline:
    """What Offload does to one case: (time, kind) with kind 'event' (a webhook), 'answer' (we delivered
    one; Offload moves right after) or 'end' (terminal, with a webhook); and the steps it schedules (its
    nextActionAt while the case runs: each follow-up, then the failure once the attempts are spent). A
    reply comes unannounced, before the next of them."""

    created: int
    moves: list[tuple[int, str]]
    follow_ups: list[int]

    @property
    def ended(self) -> int:
        return self.moves[-1][0]


def timeline(rng: random.Random, created: int) -> Timeline:
    # Follow-ups, then the failure (max_retries) after the last attempt's wait.
    scheduled = [created + FOLLOW_UP * n for n in range(1, MAX_ATTEMPTS + 1)]
    give_up = scheduled[-1]
    kind = rng.choices(("replies", "asks", "silent"), weights=(0.45, 0.35, 0.20))[0]
    if kind == "replies":
        reply = created + int(rng.expovariate(1 / (2 * DAY)))
        return Timeline(created, [(min(reply, give_up), "end")], scheduled)
    if kind == "asks":
        asked = created + int(rng.expovariate(1 / DAY))
        answered = asked + int(rng.expovariate(1 / (4 * HOUR)))
        done = answered + int(rng.expovariate(1 / DAY))
        # Waiting for input stops the follow-ups until the answer; they start again from the reply.
        moves = [(asked, "event"), (answered, "answer"), (answered + 60_000, "running"), (done, "end")]
        after = [answered + FOLLOW_UP * n for n in range(1, MAX_ATTEMPTS + 1)]
        return Timeline(created, moves, [f for f in scheduled if f < asked] + after)
    return Timeline(created, [(give_up, "end")], scheduled)


def checks_of(case_id: str, line: Timeline, policy: SchedulePolicy, found_after: list[int]) -> int:
    """The GETs the schedule makes while the case is open. Appends to ``found_after`` how long after each
    update Offload sends a webhook for the next check comes: how late a lost webhook would be repaired."""
    check = policy.after_event(case_id, None, CASE_CREATED, line.created, terminal=False)
    moves = list(line.moves)
    calls = 0
    waiting = False  # for an answer to the question asked: Offload cannot move the case until then
    while check is not None:
        if moves and moves[0][0] <= check.dueAt:
            at, kind = moves.pop(0)
            if kind in ("event", "end"):
                found_after.append(check.dueAt - at)
            if kind == "answer":
                waiting = False
                check = policy.after_answer(case_id, check, at)
            else:
                # An event (by webhook, or found by a check at about this time: either resets the backoff).
                waiting = kind == "event"  # the one event before the end is a question
                check = policy.after_event(
                    case_id, check, "case.update", at, terminal=kind == "end", waiting=waiting
                )
            continue
        calls += 1
        at = check.dueAt
        upcoming = [f for f in line.follow_ups if f > at]
        check = policy.after_check(case_id, check, at, upcoming[0] if upcoming else None, waiting)
    return calls


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    # The same cases for every policy.
    lines = [timeline(rng, int(rng.uniform(0, args.days * DAY))) for _ in range(args.cases)]
    rows = []
    for name, settings in (
        ("default", Settings()),
        ("safety checks every 4 h", Settings(offload_reconcile_safety_interval_s=4 * 3600.0)),
        ("safety checks every 24 h", Settings(offload_reconcile_safety_interval_s=24 * 3600.0)),
        ("no hints", Settings(offload_reconcile_hints=False)),
        (
            # The old policy when the budget, not STALE_S, sets its pace: every open case in turn.
            "every case each 5.3 h",
            Settings(
                offload_reconcile_backoff_factor=1.0,
                offload_reconcile_hints=False,
                offload_reconcile_stale_s=86_400 / 4.5,
            ),
        ),
        (
            "fixed 10 min (a sweep)",
            Settings(offload_reconcile_backoff_factor=1.0, offload_reconcile_hints=False),
        ),
    ):
        policy = SchedulePolicy.from_settings(settings)
        found_after: list[int] = []
        calls = sum(checks_of(f"case-{n}", line, policy, found_after) for n, line in enumerate(lines))
        open_days = sum(line.ended - line.created for line in lines) / DAY
        per_case_day = calls / open_days
        found_after.sort()
        p50, p95 = (found_after[int(q * (len(found_after) - 1))] / HOUR for q in (0.5, 0.95))
        rows.append((name, per_case_day, per_case_day * 10_000, p50, p95))
    print(f"{args.cases:,} cases created over {args.days} days; calls while open, per open case and day;")
    print("the next check after each update with a webhook (a lost one is repaired then), in hours")
    header = f"{'policy':<26}{'GETs/open case/day':>20}{'GETs/day at 10,000 open':>26}"
    print(f"{header}{'next check p50':>16}{'p95':>7}")
    for name, per_case_day, at_10k, p50, p95 in rows:
        print(f"{name:<26}{per_case_day:>20.2f}{at_10k:>26,.0f}{p50:>16.1f}{p95:>7.1f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=7.0, help="cases are created over this many days")
    parser.add_argument("--seed", type=int, default=7)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
