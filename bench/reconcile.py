"""The reconcile policies compared end to end: the old one (every open case idle for STALE_S asked again at
every sweep, one call in flight) against the new one (a per-case schedule with backoff, hints and
concurrency under a rate and a call budget), each in a fresh run of the real processes.

Method, per policy (old, then new):

1. A fresh topic prefix and its topics (``case-watch`` too); a simulator process (webhook drop rate, a
   fixed seed), the ingress and one worker (memory store, no standby), all on 127.0.0.1. The worker gets
   the policy's ``OFFLOAD_RECONCILE_*`` settings; both policies get the same rate and budget.
2. Time is compressed: 1 real second is K simulated seconds (``--compress``). Every duration given to the
   worker or the simulator is the simulated one divided by K, every rate multiplied by K
   (``bench.reconcile_plan``); figures are reported in simulated time, repair times in real time too.
3. CASES cases are created over ``--ramp-h`` simulated hours (24), the same plan for every policy: a mix
   of the simulator's scenarios, each case with its own step (Offload's time between two steps,
   log-uniform over 12-72 h: a counterparty replies hours to days later, follow-ups go out every
   ``followUpDelayHours``, 72 h by default), so cases stay open for days (up to about three weeks). Most
   go through ``case-requests``; a share (``--direct``) is created with ``POST /cases`` at the simulator
   and then tracked through ``case-watch``; every batch of the ramp holds both kinds alike.
4. A person answers each question once ``case-state`` shows it, after a delay of their own (log-uniform
   over 0.5-8 h): a question
   whose webhook was dropped is answered only once the reconciler repaired it, as in real life.
5. Once every case is terminal at the simulator, a settling period (until ``case-state`` equals the truth
   everywhere, or ``--settle-s``); then the figures:

- repair time of every dropped webhook (the simulator's truth lists each webhook and its fate): from the
  update's ``updatedAt`` (the event's timestamp) to the Kafka timestamp of the first ``case-state`` record
  of the case whose ``lastEventAt`` reaches it; never repaired ones are counted;
- reconcile GETs per open case per simulated day, and that at 10,000 open cases: the GETs are the
  worker's own ``GET /stats/reconcile`` counters (each GET ends in exactly one of checked, not_found,
  forbidden, throttled, invalid; the simulator counts no calls, and its GETs would include the answer
  agent's), the open time is each case's time from creation to terminal at the simulator;
- the share of cases whose ``case-state`` (status, lastEventAt, question while asked, resultStatus)
  equals the simulator's truth, separately for bridge-created and tracked cases;
- the GET rate used against the budget (per budget window) and the real rate the machine delivered:
  when that real rate is far below the configured one, this machine was the limit, not the policy.

Both policies get the same budget, by default the README's sizing (4.5 calls per case a day) and a rate of
twice its mean, so that the budget sets the old policy's pace: every open case in turn, about every 5 h.
In the simulator every step of a case happens at the ``nextActionAt`` it showed (a reply too, which real
Offload does not announce): see ``bench.reconcile_schedule`` for unannounced replies.

Run: ``.venv/bin/python -m bench.reconcile`` (about 16 minutes at the default size, a simulated hour a
real second). ``--policy new`` runs one policy; ``--runs 3`` three runs with seeds seed, seed+1, ... and
the medians; ``--before-checkout DIR`` (``git worktree add DIR REV``) adds the policy "before": the new
policy's settings given to the worker of that checkout; ``--json PATH`` saves the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import HttpUrl, SecretStr

from bench.reconcile_figures import TERMINAL, policy_figures, state_key, summary, table, truth_key
from bench.reconcile_plan import POLICIES, CasePlan, Compression, make_plans, policy_env, policy_settings
from bench.reconcile_world import (
    CounterSampler,
    Observer,
    create_directly,
    create_topics,
    request_cases,
    track,
)
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY
from offload_bridge.testing import (
    ServiceProcess,
    delete_topics_with_prefix,
    free_port,
    settings_env,
    unique_prefix,
)

# The cases of a run are created in this many batches, spread over --ramp-h.
RAMP_BATCHES = 40

LOCAL_BROKER = "127.0.0.1:9092"


async def wait_for(what: str, done: Any, deadline_s: float, observer: Observer, every_s: float = 0.5) -> None:
    """Await ``done()`` until it is true; fail after ``deadline_s`` or when the observer failed."""
    give_up = time.monotonic() + deadline_s
    while not await done():
        observer.check()
        if time.monotonic() > give_up:
            raise TimeoutError(f"{what}: not within {deadline_s:.0f}s")
        await asyncio.sleep(every_s)


class Truths:
    """The simulator's truth of every case (``GET /_sim/cases/{id}``), fetched a few at a time."""

    def __init__(self, sim_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=sim_url, timeout=30)
        self.final: dict[str, dict[str, Any]] = {}  # terminal cases: their truth no longer changes
        self.latest: dict[str, dict[str, Any]] = {}
        self.read_at: dict[str, float] = {}
        self.stranded: set[str] = set()

    async def aclose(self) -> None:
        await self.client.aclose()

    async def count(self) -> int:
        return int((await self.client.get("/_sim/health")).json()["data"]["cases"])

    async def case_ids(self) -> list[str]:
        return list((await self.client.get("/_sim/cases")).json()["data"]["caseIds"])

    async def fetch(self, case_ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        pending = iter(case_ids)

        async def one() -> None:
            for case_id in pending:
                response = await self.client.get(f"/_sim/cases/{case_id}")
                response.raise_for_status()
                found[case_id] = response.json()["data"]

        await asyncio.gather(*(one() for _ in range(4)))
        return found

    async def all_done(self, case_ids: list[str], views: dict[str, Any], per_round: int) -> bool:
        """True once every case is terminal, or stranded: waiting for an answer to a question whose every
        webhook was dropped, of a case ``case-state`` never showed (nobody can know there is a question,
        so nobody answers; it stays open, as it would in real life).

        Reads at most ``per_round`` truths, those ``case-state`` shows terminal first, then the ones read
        longest ago: watching must cost the simulator little."""
        open_ids = [case_id for case_id in case_ids if case_id not in self.final]
        open_ids.sort(key=lambda case_id: (views.get(case_id) is None or views[case_id].latest.get("status")
                                           not in TERMINAL, self.read_at.get(case_id, 0.0)))  # fmt: skip
        for case_id, truth in (await self.fetch(open_ids[:per_round])).items():
            self.read_at[case_id] = time.monotonic()
            self.latest[case_id] = truth
            if truth["status"] in TERMINAL:
                self.final[case_id] = truth
        self.stranded = {
            case_id
            for case_id in case_ids
            if case_id not in self.final and stranded(self.latest.get(case_id), views)
        }
        return len(self.final) + len(self.stranded) == len(case_ids)


def stranded(truth: dict[str, Any] | None, views: dict[str, Any]) -> bool:
    if truth is None or truth["status"] != "INPUT_NEEDED" or truth["caseId"] in views:
        return False
    return bool(truth["webhooks"]) and all(webhook["dropped"] for webhook in truth["webhooks"])


async def run_policy(
    policy: str,
    args: argparse.Namespace,
    plans: list[CasePlan],
    compression: Compression,
    workdir: Path,
    seed: int,
) -> dict[str, Any]:
    prefix = unique_prefix(f"rcb-{policy}")
    run = prefix.rstrip(".")
    sim_port, ingress_port, worker_port = free_port(), free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    webhook_url = f"http://127.0.0.1:{ingress_port}/webhooks/offload"
    worker_url = f"http://127.0.0.1:{worker_port}"
    settings = Settings(
        kafka_bootstrap_servers=LOCAL_BROKER,
        offload_topic_prefix=prefix,
        offload_base_url=HttpUrl(sim_url),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
        offload_public_webhook_url=HttpUrl(webhook_url),
    )
    simulated = policy_settings(policy, compression, args.rps, args.budget_calls, args.budget_window_s)
    reconcile_env = policy_env(simulated, compression)
    logs = workdir / policy
    logs.mkdir(parents=True)
    sim_env = {
        "SIMULATOR_FAULT_WEBHOOK_DROP_RATE": str(args.drop_rate),
        "SIMULATOR_FAULT_LATENCY_MS": str(round(args.latency_ms / compression.factor)),
    }
    simulator = ServiceProcess(
        ["simulator", "--port", str(sim_port), "--seed", str(seed)],
        env=sim_env,
        log_path=logs / "simulator.log",
    )
    ingress = ServiceProcess(
        ["ingress", "--port", str(ingress_port)], env=settings_env(settings), log_path=logs / "ingress.log"
    )
    worker_env = {
        **settings_env(settings),
        **reconcile_env,
        "OFFLOAD_WORKER_WEB_PORT": str(worker_port),
        "OFFLOAD_WORKER_DATA_DIR": str(logs / "data"),
        "OFFLOAD_WORKER_STORE": "memory://",
        "OFFLOAD_WORKER_STANDBY_REPLICAS": "0",  # one worker: a standby copy would have nowhere to live
        "OFFLOAD_WORKER_LOG_LEVEL": "warning",
    }
    if policy == "before":
        # The worker of the other checkout: its package comes first on the path (the bench stays this one).
        worker_env["PYTHONPATH"] = str(Path(args.before_checkout).resolve())
    worker = ServiceProcess(["worker"], env=worker_env, log_path=logs / "worker.log", cwd=logs)
    observer = Observer(settings, plans, compression)
    sampler = CounterSampler(worker_url, every_s=0.25)
    truths = Truths(sim_url)
    started: list[ServiceProcess] = []
    print(f"\n[{policy}] prefix {prefix}  logs {logs}", flush=True)
    print(f"[{policy}] worker: {' '.join(f'{k}={v}' for k, v in sorted(reconcile_env.items()))}", flush=True)
    try:
        create_topics(settings)
        for process, ready in (
            (simulator, f"{sim_url}/_sim/health"),
            (ingress, f"http://127.0.0.1:{ingress_port}/readyz"),
            (worker, f"{worker_url}/ready"),
        ):
            started.append(process.start())
            process.wait_http(ready, timeout_s=args.phase_timeout)
        await observer.start()
        sampler.start()
        begin = time.monotonic()

        # Created in RAMP_BATCHES batches over --ramp-h simulated hours, as a business creates cases
        # through a morning rather than in one instant (--ramp-h 0: all at once).
        ramp_s = compression.duration_s(args.ramp_h * 3600)
        batches = RAMP_BATCHES if ramp_s > 0 else 1
        tracked_ids: list[str] = []  # every batch's: the report tells tracked cases by this
        for batch in range(batches):
            # Consecutive plans: every batch holds the mix of bridge-created and tracked cases (taking every
            # batches-th plan put all tracked ones into one batch in five).
            chosen = plans[batch * len(plans) // batches : (batch + 1) * len(plans) // batches]
            bridge_plans = [plan for plan in chosen if not plan.direct]
            direct_plans = [plan for plan in chosen if plan.direct]
            await request_cases(settings, bridge_plans, run, compression)
            direct_ids = await create_directly(
                sim_url, webhook_url, direct_plans, run, compression, args.phase_timeout
            )
            await asyncio.to_thread(track, settings, direct_ids)
            tracked_ids += direct_ids
            if batch < batches - 1:
                await asyncio.sleep(ramp_s / batches)

        async def all_created() -> bool:
            return await truths.count() >= len(plans)

        await wait_for(f"[{policy}] {len(plans)} cases created", all_created, args.phase_timeout, observer)
        created_s = time.monotonic() - begin
        print(f"[{policy}] {len(plans)} cases created in {created_s:.1f}s", flush=True)
        case_ids = await truths.case_ids()

        async def all_terminal() -> bool:
            return await truths.all_done(case_ids, observer.views, per_round=100)

        await wait_for(
            f"[{policy}] every case terminal at the simulator",
            all_terminal,
            args.phase_timeout,
            observer,
            1.0,
        )
        lived_s = time.monotonic() - begin
        days = lived_s * compression.factor / 86400
        stranded_now, answers = len(truths.stranded), observer.answers_sent
        print(f"[{policy}] every case terminal after {lived_s:.0f}s ({days:.1f} simulated days) but "
              f"{stranded_now} stranded; {answers} answers sent", flush=True)  # fmt: skip

        final = truths.final

        async def settled() -> bool:
            """Every terminal case as Offload has it (a stranded one cannot be)."""
            return all(
                case_id in observer.views and state_key(observer.views[case_id].latest) == truth_key(truth)
                for case_id, truth in final.items()
            )

        try:
            await wait_for(f"[{policy}] case-state equal to the truth", settled, args.settle_s, observer)
        except TimeoutError as unsettled:
            print(f"{unsettled} (figures taken as they are)", flush=True)
        run_s = time.monotonic() - begin
        await sampler.stop()
        # Now with every webhook's delivery recorded, and the history complete.
        final = await truths.fetch(case_ids)
        end_ms = time.time_ns() // 1_000_000
        return policy_figures(
            final,
            observer.views,
            set(tracked_ids),
            sampler.samples,
            sampler.latest,
            compression,
            simulated,
            run_s,
            end_ms,
        ) | {"settings": simulated, "workerEnv": reconcile_env, "runRealS": run_s}
    finally:
        await sampler.stop()
        await observer.stop()
        await truths.aclose()
        for process in reversed(started):
            process.stop()
        delete_topics_with_prefix(settings)


async def run(args: argparse.Namespace) -> int:
    # SIGTERM cancels the run like Ctrl-C, so that every process it started is stopped and its topics go.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    compression = Compression(args.compress, args.interval_floor_s)
    workdir = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    shown = {
        "compress": args.compress,
        "cases": args.cases,
        "direct": args.direct,
        "rampSimHours": args.ramp_h,
        "dropRate": args.drop_rate,
        "latencySimMs": args.latency_ms,
        "latencyRealMs": round(args.latency_ms / args.compress),
        "seed": args.seed,
        "runs": args.runs,
        "stepSimHours": [args.step_min_h, args.step_max_h],
        "answerSimHours": [args.answer_min_h, args.answer_max_h],
        "intervalFloorRealS": args.interval_floor_s,
        "rpsSim": round(args.rps, 5),
        "budget": f"{args.budget_calls} calls per {args.budget_window_s:g} simulated s",
        "policies": ",".join(args.policy),
    }
    print("settings: " + "  ".join(f"{k}={v}" for k, v in shown.items()), flush=True)
    runs: list[dict[str, dict[str, Any]]] = []
    for number in range(args.runs):
        # Each run its own plan and simulator seed; within a run every policy gets the same.
        seed = args.seed + number
        plans = make_plans(
            args.cases,
            args.direct,
            seed,
            (args.step_min_h, args.step_max_h),
            (args.answer_min_h, args.answer_max_h),
        )
        figures: dict[str, dict[str, Any]] = {}
        for policy in args.policy:
            figures[policy] = await run_policy(
                policy, args, plans, compression, workdir / f"run-{number + 1}", seed
            )
        runs.append(figures)
        print(f"\nrun {number + 1} of {args.runs} (seed {seed})")
        print(table(figures))
        print(
            "GETs: the worker's GET /stats/reconcile (checked + not_found + forbidden + throttled + invalid)"
        )
    if len(runs) > 1:
        print()
        print(summary(runs))
    print()
    print("settings: " + "  ".join(f"{k}={v}" for k, v in shown.items()))
    for policy, found in runs[-1].items():
        print(f"{policy}: " + "  ".join(f"{k}={v}" for k, v in found["settings"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": shown, "runs": runs}, indent=2) + "\n")
        print(f"figures saved to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=500, help="cases, created over --ramp-h")
    parser.add_argument("--direct", type=float, default=0.2, help="share created at Offload and tracked")
    parser.add_argument(
        "--compress",
        type=float,
        default=3_600.0,
        help="simulated seconds per real second (default: a simulated hour a second, so a run of cases"
        " that live for days takes minutes)",
    )
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        action="append",
        help="run only this policy (repeatable; default old and new, and before with --before-checkout)",
    )
    parser.add_argument(
        "--before-checkout",
        help="a checkout of an earlier version (git worktree add DIR REV): its worker runs the new policy's"
        " settings as the policy 'before', in the same run",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="runs, each with its own seed; medians at the end"
    )
    parser.add_argument(
        "--ramp-h",
        type=float,
        default=24.0,
        help="simulated hours over which the cases are created (0: all at once); the last is created while"
        " nearly all the others are still open",
    )
    parser.add_argument("--drop-rate", type=float, default=0.2, help="share of webhooks the simulator drops")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=200.0,
        help="Offload's latency per call, simulated ms (divided by K)",
    )
    parser.add_argument("--seed", type=int, default=7, help="the case plan's and the simulator's seed")
    # Offload's pace: a counterparty replies hours to days after an email, follow-ups go out every
    # followUpDelayHours (72 h by default), so most steps of a case are half a day to three days apart.
    parser.add_argument("--step-min-h", type=float, default=12.0, help="shortest step of a case, simulated h")
    parser.add_argument("--step-max-h", type=float, default=72.0, help="longest step of a case, simulated h")
    parser.add_argument("--answer-min-h", type=float, default=0.5, help="quickest answer, simulated h")
    parser.add_argument("--answer-max-h", type=float, default=8.0, help="slowest answer, simulated h")
    parser.add_argument(
        "--budget-per-case-day",
        type=float,
        default=4.5,
        help="the budget, both policies, as the README sizes it: this many calls per case a day"
        " (--budget-calls = cases x this x window / 1 day, unless given)",
    )
    parser.add_argument(
        "--budget-calls", type=int, help="OFFLOAD_RECONCILE_BUDGET_CALLS, both policies (see above)"
    )
    parser.add_argument(
        "--budget-window-s", type=float, default=3_600.0, help="OFFLOAD_RECONCILE_BUDGET_WINDOW_S (simulated)"
    )
    parser.add_argument(
        "--rps",
        type=float,
        help="OFFLOAD_RECONCILE_RPS (simulated), both policies; default twice the budget's mean rate, so the"
        " budget, not the rate, bounds the calls. At the defaults: 94 calls a simulated hour, 94 real calls a"
        " second, which this machine keeps up with",
    )
    parser.add_argument(
        "--interval-floor-s", type=float, default=0.05, help="shortest real OFFLOAD_RECONCILE_INTERVAL_S"
    )
    parser.add_argument(
        "--settle-s", type=float, default=60.0, help="real s for case-state to catch up at the end"
    )
    parser.add_argument("--phase-timeout", type=float, default=900.0, help="deadline of each phase, real s")
    parser.add_argument("--json", help="save the figures to this file")
    args = parser.parse_args(argv)
    default_policies = ("old", "before", "new") if args.before_checkout else ("old", "new")
    args.policy = list(dict.fromkeys(args.policy or default_policies))
    if "before" in args.policy and not args.before_checkout:
        parser.error("--policy before needs --before-checkout")
    if args.budget_calls is None:
        args.budget_calls = max(
            1, round(args.cases * args.budget_per_case_day * args.budget_window_s / 86_400)
        )
    if args.rps is None:
        args.rps = 2 * args.budget_calls / args.budget_window_s
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
