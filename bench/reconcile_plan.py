"""What ``bench.reconcile`` runs: the two policies' settings under compressed time, and the case mix.

Time is compressed by K (1 real second = K simulated seconds). Every duration the worker or the simulator
is given is the simulated one divided by K; every rate (calls a second) is multiplied by K, so that a
limit means the same number of calls per simulated second. Counts (the budget's calls, concurrency) and
fractions (jitter) stay as they are.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from offload_bridge.settings import Settings

# What the policies take from the reconcile settings: the new policy is the worker's defaults. The old
# policy is the same machinery with no backoff, no hints and one call in flight: every open case idle for
# STALE_S is asked again and again. "before" is the new policy's settings given to the worker of another
# checkout (--before-checkout: an earlier version of the schedule, measured in the same run).
_NAMES = (
    "STALE_S", "BACKOFF_FACTOR", "MAX_INTERVAL_S", "JITTER", "HINTS", "AFTER_ANSWER_S", "AFTER_CREATE_S",
    "AFTER_NEXT_ACTION_S", "SAFETY_INTERVAL_S", "CONCURRENCY", "RPS", "BUDGET_CALLS", "BUDGET_WINDOW_S",
    "INTERVAL_S",
)  # fmt: skip
_DEFAULTS = Settings()
NEW_DEFAULTS: dict[str, float | int | bool] = {
    name: getattr(_DEFAULTS, f"offload_reconcile_{name.lower()}") for name in _NAMES
}
OLD_OVERRIDES: dict[str, float | int | bool] = {"BACKOFF_FACTOR": 1, "HINTS": False, "CONCURRENCY": 1}
POLICIES = ("old", "new", "before")

DURATIONS = ("STALE_S", "MAX_INTERVAL_S", "AFTER_ANSWER_S", "AFTER_CREATE_S", "AFTER_NEXT_ACTION_S",
             "SAFETY_INTERVAL_S", "BUDGET_WINDOW_S", "INTERVAL_S")  # fmt: skip
RATES = ("RPS",)
# Today's settings refuse OFFLOAD_RECONCILE_RPS above this; a compressed rate is capped to it.
MAX_RPS = 10_000.0

SCENARIOS: dict[str, float] = {
    "complete": 0.30,
    "input_then_complete": 0.25,
    "input_twice_then_complete": 0.15,
    "fail_max_retries": 0.15,
    "fail_bounced": 0.15,
}
QUESTIONS = {"input_then_complete": 1, "input_twice_then_complete": 2}

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Compression:
    factor: float
    # The worker's timer never ticks faster than this (real seconds): a tighter one only burns CPU.
    interval_floor_s: float

    def duration_s(self, simulated_s: float) -> float:
        return simulated_s / self.factor

    def real_ms(self, simulated_ms: float) -> int:
        """A simulated duration as whole real milliseconds, at least 1 (the simulator's knobs are ints)."""
        return max(1, round(simulated_ms / self.factor))


def policy_settings(
    policy: str, compression: Compression, rps: float, budget_calls: int, budget_window_s: float
) -> dict[str, float | int | bool]:
    """The policy's reconcile settings in simulated terms (what the report shows)."""
    values = {**NEW_DEFAULTS, "RPS": rps, "BUDGET_CALLS": budget_calls, "BUDGET_WINDOW_S": budget_window_s}
    if policy == "old":
        values.update(OLD_OVERRIDES)
    return values


def policy_env(simulated: dict[str, float | int | bool], compression: Compression) -> dict[str, str]:
    """``OFFLOAD_RECONCILE_*`` for the worker: the simulated settings in real time."""
    env: dict[str, str] = {}
    for name, value in simulated.items():
        real: float | int | bool = value
        if name in DURATIONS:
            real = compression.duration_s(float(value))
            if name == "INTERVAL_S":
                real = max(real, compression.interval_floor_s)
        elif name in RATES:
            real = min(float(value) * compression.factor, MAX_RPS)
        env[f"OFFLOAD_RECONCILE_{name}"] = (
            ("true" if real else "false") if isinstance(real, bool) else str(real)
        )
    return env


@dataclass(frozen=True)
class CasePlan:
    """One case of the run: the same plan for both policies (one seed)."""

    index: int
    scenario: str
    step_sim_ms: int  # Offload's time between two steps of this case (simulated)
    direct: bool  # created at Offload directly and tracked, rather than by a case request
    answer_delays_sim_ms: tuple[int, ...] = field(default=())  # a person's time to answer each question

    def reference(self, run: str) -> str:
        """The clientReferenceId: how a case-state record is tied back to its plan (GET /cases has no
        metadata, so a case first seen through the reconciler carries only this)."""
        return f"bench-{run}-{self.index}"


def index_of(reference: str | None) -> int | None:
    if reference is None or not reference.startswith("bench-"):
        return None
    tail = reference.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def make_plans(
    cases: int,
    direct_share: float,
    seed: int,
    step_hours: tuple[float, float],
    answer_hours: tuple[float, float],
) -> list[CasePlan]:
    """Scenarios by SCENARIOS' weights; steps log-uniform over ``step_hours`` (a counterparty replies
    hours to days later, follow-ups are days apart); answers log-uniform over ``answer_hours``."""
    rng = random.Random(seed)
    names, weights = list(SCENARIOS), list(SCENARIOS.values())
    plans = []
    for index in range(cases):
        scenario = rng.choices(names, weights)[0]
        step = round(log_uniform(rng, *step_hours) * HOUR_MS)
        delays = tuple(
            round(log_uniform(rng, *answer_hours) * HOUR_MS) for _ in range(QUESTIONS.get(scenario, 0))
        )
        # Spread evenly: exactly floor(cases * direct_share) of them, every 1/direct_share-th case.
        direct = math.floor((index + 1) * direct_share) > math.floor(index * direct_share)
        plans.append(CasePlan(index, scenario, step, direct, delays))
    return plans
