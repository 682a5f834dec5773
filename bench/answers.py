"""Benchmark of answer forwarding against a raw httpx loop measured in the same run.

Each of RUNS runs, on its own topics:

1. The simulator (a real process, 1 ms lifecycle steps, no latency yet) gets 3 x ANSWERS cases waiting
   for input; then its latency is set to LATENCY_MS, added to every API call.
2. Anchors: a bare httpx.AsyncClient posts ``POST /cases/{id}/input`` for ANSWERS of the questions with
   IN_FLIGHT requests in flight, then a bare aiohttp.ClientSession for ANSWERS others
   (``bench.offload_calls`` says why both).
3. Worker: ANSWERS answers to the other questions are produced to ``answers`` (acks=all), then
   ``offload-bridge worker`` (a real process, ``OFFLOAD_ANSWER_IN_FLIGHT=IN_FLIGHT``) starts and forwards
   them; the rate is taken between the first and the last terminal outcome on ``answer-outcomes`` (every
   one must be ``accepted``), the worker's CPU time (user + system, from ready to the last outcome) is
   divided by the answers.

The figures are the median (min, max) of the runs; the ratio is of the medians. Only targets 127.0.0.1;
every phase has a deadline; each run's topics are deleted afterwards.
Run: ``.venv/bin/python -m bench.answers --latency-ms 200`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from pydantic import HttpUrl, SecretStr

from bench import kafka_reading
from bench.offload_calls import (
    HEADERS,
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
    set_latency,
)
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.schemas.answers import Answer, AnswerOutcome, Outcome
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY, case_body
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS, topic_name

Question = tuple[str, str]  # (caseId, inputRequestId)
TEXT = "Yes, a signed PDF is fine."


async def open_questions(client: httpx.AsyncClient, count: int, deadline_s: float) -> list[Question]:
    """``count`` simulator cases waiting for input, created 16 at a time."""
    body = case_body(scenario="input_then_complete", step_ms=1)
    case_ids: list[str] = []

    async def create(slots: itertools.count[int]) -> None:
        for _ in slots:
            if len(case_ids) >= count:
                return
            response = await client.post("/cases", json=body)
            response.raise_for_status()
            case_ids.append(response.json()["data"]["caseId"])

    slots = itertools.count()
    await asyncio.wait_for(asyncio.gather(*(create(slots) for _ in range(16))), deadline_s)
    questions: list[Question] = []
    give_up = time.monotonic() + deadline_s
    for case_id in case_ids[:count]:
        while True:
            data = (await client.get(f"/cases/{case_id}")).json()["data"]
            if data["status"] == "INPUT_NEEDED":
                questions.append((case_id, data["inputRequest"]["id"]))
                break
            if time.monotonic() > give_up:
                raise RuntimeError(f"case {case_id} never asked its question")
            await asyncio.sleep(0.01)
    return questions


async def raw_loop(base_url: str, questions: list[Question], in_flight: int, deadline_s: float) -> Measured:
    """A bare httpx loop posting one answer per question, ``in_flight`` at once."""
    async with raw_client(base_url, in_flight) as client:

        def answer(case_id: str, question: str) -> Callable[[], Awaitable[None]]:
            async def post() -> None:
                body = {"inputRequestId": question, "providedContext": TEXT}
                response = await client.post(f"/cases/{case_id}/input", json=body)
                if response.status_code != 202:
                    raise RuntimeError(f"anchor: {case_id} answered {response.status_code} {response.text}")

            return post

        calls = [answer(case_id, question) for case_id, question in questions]
        return await measure_raw(len(calls), lambda: run_concurrently(calls, in_flight, deadline_s))


async def raw_aiohttp_loop(
    base_url: str, questions: list[Question], in_flight: int, deadline_s: float
) -> Measured:
    """The same with a bare aiohttp session."""
    async with raw_aiohttp_session(base_url, in_flight) as session:

        def answer(case_id: str, question: str) -> Callable[[], Awaitable[None]]:
            async def post() -> None:
                body = {"inputRequestId": question, "providedContext": TEXT}
                async with session.post(f"/cases/{case_id}/input", json=body) as response:
                    text = await response.text()
                    if response.status != 202:
                        raise RuntimeError(f"anchor: {case_id} answered {response.status} {text}")

            return post

        calls = [answer(case_id, question) for case_id, question in questions]
        return await measure_raw(len(calls), lambda: run_concurrently(calls, in_flight, deadline_s))


async def produce_answers(settings: Settings, questions: list[Question]) -> None:
    topic = topic_name(ANSWERS, settings)
    producer = kafka_reading.producer(settings)
    await producer.start()
    try:
        sent = []
        for case_id, question in questions:
            answer = Answer(caseId=case_id, inputRequestId=question, providedContext=TEXT)
            value = answer.model_dump_json(exclude_none=True).encode()
            sent.append(await producer.send(topic, value, key=case_id.encode()))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def outcome_moments(settings: Settings, expected: int) -> list[int]:
    """The ``at`` of every terminal outcome on answer-outcomes, once there are ``expected``."""
    consumer = await kafka_reading.from_beginning(settings, topic_name(ANSWER_OUTCOMES, settings))
    try:
        terminal: list[AnswerOutcome] = []
        while len(terminal) < expected:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    outcome = AnswerOutcome.model_validate_json(record.value or b"")
                    if outcome.outcome.terminal:
                        terminal.append(outcome)
        refused = [o for o in terminal if o.outcome is not Outcome.ACCEPTED]
        if refused:
            raise RuntimeError(f"{len(refused)} answers not accepted, e.g. {refused[0]}")
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
    try:
        async with httpx.AsyncClient(base_url=sim_url, headers=HEADERS, timeout=30) as client:
            await set_latency(client, 0)
            questions = await open_questions(client, 3 * args.answers, args.phase_timeout)
            await set_latency(client, args.latency_ms)
        for_raw, for_aiohttp, for_worker = (
            questions[n * args.answers : (n + 1) * args.answers] for n in range(3)
        )
        raw = await raw_loop(sim_url, for_raw, args.in_flight, args.phase_timeout)
        figures.raw.append(raw)
        print(f"httpx:    {raw.rate:,.0f} answers/s, {raw.cpu_ms:.2f} ms CPU per answer", flush=True)
        raw = await raw_aiohttp_loop(sim_url, for_aiohttp, args.in_flight, args.phase_timeout)
        figures.raw_aiohttp.append(raw)
        print(f"aiohttp:  {raw.rate:,.0f} answers/s, {raw.cpu_ms:.2f} ms CPU per answer", flush=True)
        await produce_answers(settings, for_worker)
        env = {"OFFLOAD_ANSWER_IN_FLIGHT": str(args.in_flight)}
        worker = await measure_worker(
            settings, workdir, env, len(for_worker),
            lambda: outcome_moments(settings, len(for_worker)), args.phase_timeout,
        )  # fmt: skip
        figures.worker.append(worker)
        print(f"worker:   {worker.rate:,.0f} answers/s, {worker.cpu_ms:.2f} ms CPU per answer "
              f"({worker.system_share or 0:.0%} system), {worker.seconds:.1f}s", flush=True)  # fmt: skip
    finally:
        delete_topics_with_prefix(settings)


async def run(args: argparse.Namespace) -> int:
    return await run_phases(args, "answers", Figures("answers"), f"answers {args.answers}", one_run)


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__ or "", "answers", "answers per phase", "anchor")
    return run_main(parser.parse_args(argv), run)


if __name__ == "__main__":
    sys.exit(main())
