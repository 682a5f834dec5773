"""Benchmark of case creation from ``case-requests`` against raw HTTP loops measured in the same run.

Each of RUNS runs, on its own topics, with the simulator's latency set to LATENCY_MS:

1. Anchors: a bare httpx.AsyncClient makes REQUESTS ``POST /cases`` with IN_FLIGHT requests in flight,
   then a bare aiohttp.ClientSession as many (``bench.offload_calls`` says why both).
2. Worker: REQUESTS case requests are produced to ``case-requests`` (acks=all), then
   ``offload-bridge worker`` (a real process, ``OFFLOAD_CASE_REQUEST_IN_FLIGHT=IN_FLIGHT``) starts and
   creates the cases; the rate is taken between the first and the last terminal outcome on
   ``case-request-outcomes`` (every one must be ``created``), the worker's CPU time (user + system, from
   ready to the last outcome) is divided by the requests. Each creation also writes the request's table
   entry before the call (``pending``, acknowledged), its end after it, and the ``case.created`` event the
   state agent folds.

The cases never move (a step of an hour), so the simulator does the same work for every side. The figures
are the median (min, max) of the runs; the ratio is of the medians. Only targets 127.0.0.1; every phase has
a deadline; each run's topics are deleted afterwards.
Run: ``.venv/bin/python -m bench.case_requests --latency-ms 200`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import HttpUrl, SecretStr

from bench import kafka_reading
from bench.offload_calls import (
    HEADERS,
    LOCAL_BROKER,
    Figures,
    Measured,
    load,
    measure_raw,
    measure_worker,
    raw_aiohttp_session,
    raw_client,
    run_concurrently,
    set_latency,
    start_simulator,
)
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.schemas.case_requests import CaseRequest, CaseRequestOutcome, CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY, case_body
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from offload_bridge.topics import CASE_REQUEST_OUTCOMES, CASE_REQUESTS, topic_name

# A case that stays CREATED for an hour: the simulator sends nothing and moves nothing during the run.
QUIET_STEP_MS = 3_600_000


def bodies(count: int, label: str) -> list[dict[str, Any]]:
    return [
        case_body(scenario="complete", step_ms=QUIET_STEP_MS, clientReferenceId=f"{label}-{n}")
        for n in range(count)
    ]


async def raw_httpx(
    base_url: str, requests: list[dict[str, Any]], in_flight: int, deadline_s: float
) -> Measured:
    async with raw_client(base_url, in_flight) as client:

        def create(body: dict[str, Any]) -> Callable[[], Awaitable[None]]:
            async def post() -> None:
                response = await client.post("/cases", json=body)
                if response.status_code != 201:
                    raise RuntimeError(f"anchor: POST /cases answered {response.status_code} {response.text}")

            return post

        calls = [create(body) for body in requests]
        return await measure_raw(len(calls), lambda: run_concurrently(calls, in_flight, deadline_s))


async def raw_aiohttp(
    base_url: str, requests: list[dict[str, Any]], in_flight: int, deadline_s: float
) -> Measured:
    async with raw_aiohttp_session(base_url, in_flight) as session:

        def create(body: dict[str, Any]) -> Callable[[], Awaitable[None]]:
            async def post() -> None:
                async with session.post("/cases", json=body) as response:
                    text = await response.text()
                    if response.status != 201:
                        raise RuntimeError(f"anchor: POST /cases answered {response.status} {text}")

            return post

        calls = [create(body) for body in requests]
        return await measure_raw(len(calls), lambda: run_concurrently(calls, in_flight, deadline_s))


async def produce_requests(settings: Settings, requests: list[dict[str, Any]]) -> None:
    topic = topic_name(CASE_REQUESTS, settings)
    producer = kafka_reading.producer(settings)
    await producer.start()
    try:
        sent = []
        for body in requests:
            request = CaseRequest.model_validate({**body, "requestId": body["clientReferenceId"]})
            value = request.model_dump_json(exclude_unset=True).encode()
            sent.append(await producer.send(topic, value, key=request.requestId.encode()))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def outcome_moments(settings: Settings, expected: int) -> list[int]:
    """The ``at`` of every terminal outcome on case-request-outcomes, once there are ``expected``."""
    consumer = await kafka_reading.from_beginning(settings, topic_name(CASE_REQUEST_OUTCOMES, settings))
    try:
        terminal: list[CaseRequestOutcome] = []
        while len(terminal) < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    outcome = CaseRequestOutcome.model_validate_json(record.value or b"")
                    if outcome.outcome is not CaseRequestOutcomeKind.RETRYING:
                        terminal.append(outcome)
        refused = [o for o in terminal if o.outcome is not CaseRequestOutcomeKind.CREATED]
        if refused:
            raise RuntimeError(f"{len(refused)} requests not created, e.g. {refused[0]}")
        return [outcome.at for outcome in terminal]
    finally:
        await consumer.stop()


async def one_run(args: argparse.Namespace, sim_url: str, workdir: Path, figures: Figures) -> None:
    workdir.mkdir(parents=True)
    settings = Settings(
        kafka_bootstrap_servers=LOCAL_BROKER,
        offload_topic_prefix=unique_prefix("bench"),
        offload_base_url=HttpUrl(sim_url),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
    )
    ensure_topics(settings)
    label = settings.offload_topic_prefix.rstrip(".")
    try:
        raw = await raw_httpx(
            sim_url, bodies(args.requests, f"{label}-httpx"), args.in_flight, args.phase_timeout
        )
        figures.raw.append(raw)
        print(f"httpx:    {raw.rate:,.0f} cases/s, {raw.cpu_ms:.2f} ms CPU per case", flush=True)
        raw = await raw_aiohttp(
            sim_url, bodies(args.requests, f"{label}-aiohttp"), args.in_flight, args.phase_timeout
        )
        figures.raw_aiohttp.append(raw)
        print(f"aiohttp:  {raw.rate:,.0f} cases/s, {raw.cpu_ms:.2f} ms CPU per case", flush=True)
        requests = bodies(args.requests, f"{label}-worker")
        await produce_requests(settings, requests)
        env = {"OFFLOAD_CASE_REQUEST_IN_FLIGHT": str(args.in_flight)}
        worker = await measure_worker(
            settings, workdir, env, len(requests),
            lambda: outcome_moments(settings, len(requests)), args.phase_timeout,
        )  # fmt: skip
        figures.worker.append(worker)
        print(f"worker:   {worker.rate:,.0f} cases/s, {worker.cpu_ms:.2f} ms CPU per case "
              f"({worker.system_share or 0:.0%} system), {worker.seconds:.1f}s", flush=True)  # fmt: skip
    finally:
        delete_topics_with_prefix(settings)


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-case-requests-"))
    loads = [f"before: {load()}"]
    simulator, sim_url = start_simulator(workdir, args.phase_timeout)
    figures = Figures("cases")
    print(f"case requests {args.requests} per phase, {args.in_flight} in flight, "
          f"latency {args.latency_ms} ms, {args.runs} runs; {loads[0]}", flush=True)  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=sim_url, headers=HEADERS, timeout=30) as client:
            await set_latency(client, args.latency_ms)
        for number in range(1, args.runs + 1):
            print(f"run {number}", flush=True)
            await one_run(args, sim_url, workdir / f"run-{number}", figures)
    finally:
        simulator.stop()
    loads.append(f"after:  {load()}")
    figures.report(args.in_flight, args.latency_ms, 0.8 if args.latency_ms >= 100 else 0.6, loads)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1_500, help="case requests per phase")
    parser.add_argument("--latency-ms", type=int, default=0, help="the simulator's latency per call, ms")
    parser.add_argument(
        "--in-flight", type=int, default=64, help="requests in flight: the anchors' and the worker's"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of the anchors and the worker, alternately")
    parser.add_argument("--phase-timeout", type=float, default=180.0, help="deadline of each phase, s")
    args = parser.parse_args(argv)
    return asyncio.run(asyncio.wait_for(run(args), timeout=args.phase_timeout * 4 * args.runs))


if __name__ == "__main__":
    sys.exit(main())
