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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import HttpUrl, SecretStr

from bench import kafka_reading
from bench.offload_calls import (
    LOCAL_BROKER,
    Figures,
    Measured,
    arguments,
    measure_raw,
    measure_worker,
    raw_aiohttp_session,
    raw_client,
    run_concurrently,
    run_main,
    run_phases,
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
    return await run_phases(
        args, "case-requests", Figures("cases"), f"case requests {args.requests}", one_run, latency_first=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__ or "", "requests", "case requests per phase", "anchors")
    return run_main(parser.parse_args(argv), run)


if __name__ == "__main__":
    sys.exit(main())
