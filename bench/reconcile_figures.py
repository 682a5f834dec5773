"""The figures of ``bench.reconcile``, computed from the simulator's truth of every case and what the bench
saw on ``case-state`` and in the worker's reconcile counters; and the two-policy table."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from bench.reconcile_plan import DAY_MS, HOUR_MS, MAX_RPS, Compression
from bench.reconcile_world import CaseView

TERMINAL = ("COMPLETED", "FAILED")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ended_at(truth: dict[str, Any]) -> int | None:
    """When Offload's case became terminal (its last history entry), None while open."""
    if truth["status"] not in TERMINAL:
        return None
    return int(truth["history"][-1]["at"])


def peak_open(truths: Iterable[dict[str, Any]]) -> int:
    """The most cases open at Offload at one moment."""
    moments: list[tuple[int, int]] = []
    for truth in truths:
        moments.append((int(truth["createdAt"]), 1))
        end = ended_at(truth)
        if end is not None:
            moments.append((end, -1))
    open_now = peak = 0
    for _, change in sorted(moments):  # at a tie a case's end (-1) counts before another's start
        open_now += change
        peak = max(peak, open_now)
    return peak


def repairs(truths: dict[str, dict[str, Any]], views: dict[str, CaseView]) -> tuple[list[float], int, int]:
    """For every webhook the simulator dropped: real ms from its update (the event's timestamp) to the first
    case-state record of the case whose lastEventAt reaches it. (repair times, dropped, unrepaired)."""
    times: list[float] = []
    dropped = unrepaired = 0
    for case_id, truth in truths.items():
        view = views.get(case_id)
        for webhook in truth["webhooks"]:
            if not webhook["dropped"]:
                continue
            dropped += 1
            at = int(webhook["timestamp"])
            fixed = (
                next((ts for ts, last in view.records if last is not None and last >= at), None)
                if view is not None
                else None
            )
            if fixed is None:
                unrepaired += 1
            else:
                times.append(float(fixed - at))
    return times, dropped, unrepaired


def truth_key(truth: dict[str, Any]) -> tuple[Any, ...]:
    """What our state should show of Offload's case. Our fold clears the question once a case is
    terminal (Offload keeps the last one, RESOLVED), so the question counts only while INPUT_NEEDED."""
    question = truth.get("inputRequest") or {}
    asked = question.get("id") if truth["status"] == "INPUT_NEEDED" else None
    return truth["status"], truth["updatedAt"], asked, truth.get("resultStatus")


def state_key(state: dict[str, Any]) -> tuple[Any, ...]:
    question = state.get("inputRequest") or {}
    asked = question.get("id") if state.get("status") == "INPUT_NEEDED" else None
    return state.get("status"), state.get("lastEventAt"), asked, state.get("resultStatus")


def agreement(
    truths: dict[str, dict[str, Any]], views: dict[str, CaseView], case_ids: Iterable[str]
) -> dict[str, int]:
    """How many of ``case_ids`` case-state shows as Offload has them, differently, or not at all."""
    counts = {"cases": 0, "equal": 0, "different": 0, "unknown": 0}
    for case_id in case_ids:
        counts["cases"] += 1
        view = views.get(case_id)
        if view is None:
            counts["unknown"] += 1
        elif state_key(view.latest) == truth_key(truths[case_id]):
            counts["equal"] += 1
        else:
            counts["different"] += 1
    return counts


def peak_in_window(samples: list[tuple[float, int]], window_s: float) -> int:
    """The most GETs between two samples at most ``window_s`` apart (a lower bound of the true peak in
    any window of that length, as exact as the sampling)."""
    peak = 0
    start = 0
    for end in range(len(samples)):
        while samples[end][0] - samples[start][0] > window_s:
            start += 1
        peak = max(peak, samples[end][1] - samples[start][1])
    return peak


def policy_figures(
    truths: dict[str, dict[str, Any]],
    views: dict[str, CaseView],
    direct_ids: set[str],
    samples: list[tuple[float, int]],
    counters: dict[str, int],
    compression: Compression,
    simulated: dict[str, Any],
    run_s: float,
    end_ms: int,
) -> dict[str, Any]:
    k = compression.factor
    times, dropped, unrepaired = repairs(truths, views)
    # A case still open at the end (stranded) counts until then.
    open_ms = sum((ended_at(t) or end_ms) - int(t["createdAt"]) for t in truths.values())
    open_days = open_ms * k / DAY_MS
    gets = sum(
        counters.get(name, 0) for name in ("checked", "not_found", "forbidden", "throttled", "invalid")
    )
    per_case_day = gets / open_days if open_days else None
    window_real_s = compression.duration_s(float(simulated["BUDGET_WINDOW_S"]))
    sim_hours = run_s * k / 3600
    bridge_ids = [case_id for case_id in truths if case_id not in direct_ids]
    return {
        "cases": len(truths),
        "bridgeCreated": len(bridge_ids),
        "tracked": len(direct_ids & truths.keys()),
        "peakOpen": peak_open(truths.values()),
        "droppedWebhooks": dropped,
        "unrepaired": unrepaired,
        "repairSimH": {q: _scaled(percentile(times, p), k / HOUR_MS) for q, p in _QS},
        "repairRealS": {q: _scaled(percentile(times, p), 1 / 1000) for q, p in _QS},
        "gets": gets,
        "getsSource": "worker GET /stats/reconcile: "
        + "+".join(("checked", "not_found", "forbidden", "throttled", "invalid")),
        "counters": counters,
        "openCaseDays": open_days,
        "getsPerOpenCaseDay": per_case_day,
        "getsPerDayAt10kOpen": per_case_day * 10_000 if per_case_day is not None else None,
        "equalBridge": agreement(truths, views, bridge_ids),
        "equalTracked": agreement(truths, views, sorted(direct_ids & truths.keys())),
        "runSimHours": sim_hours,
        "getsPerSimHour": gets / sim_hours if sim_hours else None,
        "peakGetsInBudgetWindow": peak_in_window(samples, window_real_s),
        "budgetCalls": simulated["BUDGET_CALLS"],
        "budgetWindowSimS": simulated["BUDGET_WINDOW_S"],
        "realGetsPerS": gets / run_s if run_s else None,
        "limitRealGetsPerS": min(float(simulated["RPS"]) * k, MAX_RPS),
        "peakRealGetsPerS": peak_in_window(samples, 1.0),
    }


_QS = (("p50", 0.50), ("p95", 0.95), ("max", 1.0))


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _share(counts: dict[str, int]) -> str:
    if not counts["cases"]:
        return "-"
    return (f"{counts['equal']}/{counts['cases']} ({counts['equal'] / counts['cases']:.0%}); "
            f"{counts['different']} diff, {counts['unknown']} unknown")  # fmt: skip


def table(figures: dict[str, dict[str, Any]]) -> str:
    """One column per policy run, then new/old (and new/before when "before" ran), one line per figure."""
    policies = [policy for policy in ("old", "before", "new") if policy in figures]
    ratios = [(a, b) for a, b in (("new", "old"), ("new", "before")) if a in figures and b in figures]
    rows: list[tuple[str, list[Any], bool]] = []  # label, a value per policy, ratio wanted

    def row(label: str, pick: Any, ratio: bool = True) -> None:
        rows.append((label, [pick(figures[policy]) for policy in policies], ratio))

    def get(*path: str) -> Any:
        def pick(f: dict[str, Any] | None) -> Any:
            value: Any = f
            for part in path:
                value = None if value is None else value.get(part)
            return value

        return pick

    row("cases (bridge-created + tracked)", lambda f: f and f"{f['bridgeCreated']} + {f['tracked']}", False)
    row("peak open at once", get("peakOpen"), False)
    row("dropped webhooks", get("droppedWebhooks"), False)
    row("  never repaired", get("unrepaired"))
    for q in ("p50", "p95", "max"):
        row(f"  repair {q}, simulated h", get("repairSimH", q))
    for q in ("p50", "p95", "max"):
        row(f"  repair {q}, real s", get("repairRealS", q))
    row("reconcile GETs", get("gets"))
    row("open case-days (simulated)", get("openCaseDays"), False)
    row("GETs per open case per day", get("getsPerOpenCaseDay"))
    row("  => GETs/day at 10,000 open", get("getsPerDayAt10kOpen"))
    row("case-state = truth, bridge-created", lambda f: f and _share(f["equalBridge"]), False)
    row("case-state = truth, tracked", lambda f: f and _share(f["equalTracked"]), False)
    row("GETs per simulated hour (mean)", get("getsPerSimHour"))
    row("peak GETs in one budget window", get("peakGetsInBudgetWindow"))
    row("  budget: calls per window", get("budgetCalls"), False)
    row("real GETs/s mean", get("realGetsPerS"))
    row("real GETs/s peak (1 s)", get("peakRealGetsPerS"))
    # Far above the mean: the machine, not the policy's rate, limited the calls.
    row("  configured rate, real GETs/s", get("limitRealGetsPerS"), False)

    width = max(len(label) for label, *_ in rows)
    value_width = 34 if len(policies) < 3 else 26
    header = "".join(f"  {policy:>{value_width}}" for policy in policies)
    header += "".join(f"  {f'{a}/{b}':>10}" for a, b in ratios)
    lines = [f"{'':{width}}{header}"]
    for label, values, wanted in rows:
        by_policy = dict(zip(policies, values, strict=True))
        line = f"{label:{width}}" + "".join(f"  {_fmt(value):>{value_width}}" for value in values)
        for a, b in ratios:
            line += f"  {_ratio(by_policy[a], by_policy[b]) if wanted else '-':>10}"
        lines.append(line)
    return "\n".join(lines)


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return f"{a / b:.2f}x"
    return "-"


# The figures summed up over several runs (--runs): their medians, and the median of each run's ratio.
_SUMMARY = (
    ("repair p50, simulated h", ("repairSimH", "p50")),
    ("repair p95, simulated h", ("repairSimH", "p95")),
    ("repair max, simulated h", ("repairSimH", "max")),
    ("never repaired", ("unrepaired",)),
    ("GETs per open case per day", ("getsPerOpenCaseDay",)),
    ("peak GETs in one budget window", ("peakGetsInBudgetWindow",)),
    ("real GETs/s mean", ("realGetsPerS",)),
)


def _pick(figures: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = figures
    for part in path:
        value = None if value is None else value.get(part)
    return value


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summary(runs: list[dict[str, dict[str, Any]]]) -> str:
    """Medians over runs: each policy's figure, and the median of the per-run ratios (each run's anchor
    is the old policy measured in that run)."""
    policies = [policy for policy in ("old", "before", "new") if all(policy in run for run in runs)]
    ratios = [(a, b) for a, b in (("new", "old"), ("new", "before")) if a in policies and b in policies]
    width = max(len(label) for label, _ in _SUMMARY)
    header = "".join(f"  {policy:>12}" for policy in policies) + "".join(
        f"  {f'{a}/{b}':>10}" for a, b in ratios
    )
    lines = [f"medians over {len(runs)} runs", f"{'':{width}}{header}"]
    for label, path in _SUMMARY:
        line = f"{label:{width}}"
        for policy in policies:
            values = [v for run in runs if isinstance(v := _pick(run[policy], path), int | float)]
            line += f"  {_fmt(_median([float(v) for v in values]), 2):>12}"
        for a, b in ratios:
            per_run = [
                float(x) / float(y)
                for run in runs
                if isinstance(x := _pick(run[a], path), int | float)
                and isinstance(y := _pick(run[b], path), int | float)
                and y
            ]
            median = _median(per_run)
            line += f"  {'-' if median is None else f'{median:.2f}x':>10}"
        lines.append(line)
        if path == ("repairSimH", "p95"):
            per_run_text = ", ".join(
                _ratio(_pick(run["new"], path), _pick(run["old"], path))
                for run in runs
                if "new" in run and "old" in run
            )
            if per_run_text:
                lines.append(f"{'  p95 new/old per run':{width}}  {per_run_text}")
    return "\n".join(lines)
