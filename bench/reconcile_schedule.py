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

Offload's ``nextActionAt`` (the next follow-up) is what a check learns. Cases are created over the first
``--days`` and counted until all are terminal; the figure is calls over the total open time.

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
    one; Offload moves right after) or 'end' (terminal, with a webhook); and its follow-up times."""

    created: int
    moves: list[tuple[int, str]]
    follow_ups: list[int]

    @property
    def ended(self) -> int:
        return self.moves[-1][0]


def timeline(rng: random.Random, created: int) -> Timeline:
    follow_ups = [created + FOLLOW_UP * n for n in range(1, MAX_ATTEMPTS)]
    give_up = created + FOLLOW_UP * MAX_ATTEMPTS
    kind = rng.choices(("replies", "asks", "silent"), weights=(0.45, 0.35, 0.20))[0]
    if kind == "replies":
        reply = created + int(rng.expovariate(1 / (2 * DAY)))
        return Timeline(created, [(min(reply, give_up), "end")], [f for f in follow_ups if f < reply])
    if kind == "asks":
        asked = created + int(rng.expovariate(1 / DAY))
        answered = asked + int(rng.expovariate(1 / (4 * HOUR)))
        done = answered + int(rng.expovariate(1 / DAY))
        # Waiting for input stops the follow-ups until the answer.
        moves = [(asked, "event"), (answered, "answer"), (answered + 60_000, "running"), (done, "end")]
        return Timeline(created, moves, [f for f in follow_ups if f < asked])
    return Timeline(created, [(give_up, "end")], follow_ups)


def checks_of(case_id: str, line: Timeline, policy: SchedulePolicy) -> int:
    """The GETs the schedule makes while the case is open."""
    check = policy.after_event(case_id, None, CASE_CREATED, line.created, terminal=False)
    moves = list(line.moves)
    calls = 0
    while check is not None:
        if moves and moves[0][0] <= check.dueAt:
            at, kind = moves.pop(0)
            if kind == "answer":
                check = policy.after_answer(case_id, check, at)
            else:
                # An event (by webhook, or found by a check at about this time: either resets the backoff).
                check = policy.after_event(case_id, check, "case.update", at, terminal=kind == "end")
            continue
        calls += 1
        at = check.dueAt
        upcoming = [f for f in line.follow_ups if f > at]
        check = policy.after_check(case_id, check, at, upcoming[0] if upcoming else None)
    return calls


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    rows = []
    for name, settings in (
        ("default", Settings()),
        ("no hints", Settings(offload_reconcile_hints=False)),
        (
            "fixed 10 min (a sweep)",
            Settings(offload_reconcile_backoff_factor=1.0, offload_reconcile_hints=False),
        ),
    ):
        policy = SchedulePolicy.from_settings(settings)
        lines = [timeline(rng, int(rng.uniform(0, args.days * DAY))) for _ in range(args.cases)]
        calls = sum(checks_of(f"case-{n}", line, policy) for n, line in enumerate(lines))
        open_days = sum(line.ended - line.created for line in lines) / DAY
        per_case_day = calls / open_days
        rows.append((name, per_case_day, per_case_day * 10_000))
    print(f"{args.cases:,} cases created over {args.days} days; calls while open, per open case and day")
    print(f"{'policy':<26}{'GETs/open case/day':>20}{'GETs/day at 10,000 open':>26}")
    for name, per_case_day, at_10k in rows:
        print(f"{name:<26}{per_case_day:>20.2f}{at_10k:>26,.0f}")
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
