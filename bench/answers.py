"""Benchmark of answer forwarding against a raw httpx loop measured in the same run.

1. The simulator (a real process, 1 ms lifecycle steps) gets 3 x ANSWERS cases waiting for input.
2. Anchor: a bare httpx.AsyncClient posts ``POST /cases/{id}/input`` for ANSWERS questions with
   CONCURRENCY requests in flight (default: the partition count, the worker's own ceiling: one call
   in flight per partition), once before and once after the worker phase; the median is the anchor.
3. Worker: ANSWERS answers to the remaining questions are produced to ``answers`` (acks=all), then
   ``offload-bridge worker`` (a real process) starts and forwards them; the rate is taken between the first
   and the last terminal outcome on ``answer-outcomes`` (every one must be ``accepted``).

Only targets 127.0.0.1; every phase has a deadline; the run's topics are deleted afterwards.
Run: ``.venv/bin/python -m bench.answers``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pydantic import HttpUrl, SecretStr

from bench import kafka_reading
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.connection import admin_for
from offload_bridge.schemas.answers import Answer, AnswerOutcome, Outcome
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY, case_body
from offload_bridge.testing import ServiceProcess, free_port, settings_env, unique_prefix
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS, topic_name

LOCAL_BROKER = "127.0.0.1:9092"
Question = tuple[str, str]  # (caseId, inputRequestId)


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


async def raw_loop(base_url: str, questions: list[Question], concurrency: int, deadline_s: float) -> float:
    """Answers/s of a bare httpx loop posting one answer per question, ``concurrency`` in flight."""
    limits = httpx.Limits(max_connections=concurrency)
    headers = {"x-api-key": DEFAULT_API_KEY}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=10) as client:
        pending = iter(questions)

        async def post_all() -> None:
            for case_id, question in pending:
                body = {"inputRequestId": question, "providedContext": "Yes, a signed PDF is fine."}
                response = await client.post(f"/cases/{case_id}/input", json=body)
                if response.status_code != 202:
                    raise RuntimeError(f"anchor: {case_id} answered {response.status_code} {response.text}")

        started, cpu_before = time.perf_counter(), time.process_time()
        await asyncio.wait_for(asyncio.gather(*(post_all() for _ in range(concurrency))), deadline_s)
        rate = len(questions) / (time.perf_counter() - started)
        used = time.process_time() - cpu_before
        print(f"raw loop CPU: {used * 1000 / len(questions):.2f} ms per answer")
        return rate


async def produce_answers(settings: Settings, questions: list[Question]) -> None:
    topic = topic_name(ANSWERS, settings)
    producer = kafka_reading.producer(settings)
    await producer.start()
    try:
        sent = []
        for case_id, question in questions:
            answer = Answer(
                caseId=case_id, inputRequestId=question, providedContext="Yes, a signed PDF is fine."
            )
            value = answer.model_dump_json(exclude_none=True).encode()
            sent.append(await producer.send(topic, value, key=case_id.encode()))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def forwarding_rate(settings: Settings, expected: int, deadline_s: float) -> tuple[float, float]:
    """(answers/s between the first and the last terminal outcome, seconds between them)."""
    topic = topic_name(ANSWER_OUTCOMES, settings)
    consumer = await kafka_reading.from_beginning(settings, topic)
    try:
        terminal: list[AnswerOutcome] = []
        give_up = time.monotonic() + deadline_s
        while len(terminal) < expected:
            if time.monotonic() > give_up:
                raise RuntimeError(f"only {len(terminal)}/{expected} outcomes within {deadline_s}s")
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                for record in records:
                    outcome = AnswerOutcome.model_validate_json(record.value or b"")
                    if outcome.outcome.terminal:
                        terminal.append(outcome)
        refused = [o for o in terminal if o.outcome is not Outcome.ACCEPTED]
        if refused:
            raise RuntimeError(f"{len(refused)} answers not accepted, e.g. {refused[0]}")
        moments = sorted(outcome.at for outcome in terminal)
        elapsed = (moments[-1] - moments[0]) / 1000
        return (len(moments) - 1) / elapsed, elapsed
    finally:
        await consumer.stop()


def delete_topics(settings: Settings) -> None:
    """Remove the run's own topics (its prefix is unique), changelogs included."""
    admin = admin_for(settings)
    try:
        mine = [name for name in admin.list_topics() if name.startswith(settings.offload_topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-answers-"))
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = ServiceProcess(["simulator", "--port", str(sim_port)], log_path=workdir / "simulator.log")
    settings = Settings(
        kafka_bootstrap_servers=LOCAL_BROKER,
        offload_topic_prefix=unique_prefix("bench"),
        offload_base_url=HttpUrl(sim_url),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
    )
    concurrency = args.concurrency or settings.offload_topic_partitions
    simulator.start()
    try:
        simulator.wait_http(f"{sim_url}/_sim/health", timeout_s=args.phase_timeout)
        ensure_topics(settings)
        print(f"prefix {settings.offload_topic_prefix}  answers {args.answers}  concurrency {concurrency}")
        headers = {"x-api-key": DEFAULT_API_KEY}
        async with httpx.AsyncClient(base_url=sim_url, headers=headers, timeout=10) as client:
            questions = await open_questions(client, 3 * args.answers, args.phase_timeout)
        before, for_worker, after = (questions[i * args.answers : (i + 1) * args.answers] for i in range(3))
        anchors = [await raw_loop(sim_url, before, concurrency, args.phase_timeout)]
        print(f"anchor (raw httpx loop) before: {anchors[0]:,.0f} answers/s", flush=True)
        await produce_answers(settings, for_worker)
        rate, elapsed = await run_worker(settings, workdir, len(for_worker), args.phase_timeout)
        print(f"worker: {rate:,.0f} answers/s ({elapsed:.1f}s)", flush=True)
        anchors.append(await raw_loop(sim_url, after, concurrency, args.phase_timeout))
        print(f"anchor (raw httpx loop) after: {anchors[1]:,.0f} answers/s", flush=True)
    finally:
        simulator.stop()
        delete_topics(settings)
    anchor = statistics.median(anchors)
    print()
    print(f"worker forwarding {rate:>8,.0f} answers/s (accepted outcomes, first to last)")
    runs = f"median of {len(anchors)} runs, {concurrency} in flight"
    print(f"raw httpx loop    {anchor:>8,.0f} answers/s ({runs})")
    print(f"ratio             {rate / anchor:>8.2f}x   (goal >= 0.8x)")
    return 0


async def run_worker(
    settings: Settings, workdir: Path, expected: int, deadline_s: float
) -> tuple[float, float]:
    port = free_port()
    env = {
        **settings_env(settings),
        "OFFLOAD_WORKER_WEB_PORT": str(port),
        "OFFLOAD_WORKER_DATA_DIR": str(workdir / "data"),
        "OFFLOAD_WORKER_LOG_LEVEL": "warning",
    }
    worker = ServiceProcess(["worker"], env=env, log_path=workdir / "worker.log", cwd=workdir)
    worker.start()
    try:
        worker.wait_http(f"http://127.0.0.1:{port}/ready", timeout_s=deadline_s)
        cpu_before = cpu_seconds(worker.pid)
        rate, elapsed = await forwarding_rate(settings, expected, deadline_s)
        used = cpu_seconds(worker.pid) - cpu_before
        print(f"worker CPU: {used * 1000 / expected:.2f} ms per answer ({used / elapsed:.0%} of a core)")
        return rate, elapsed
    finally:
        worker.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--answers", type=int, default=1_500, help="answers per phase")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="anchor in-flight requests (0: partitions)"
    )
    parser.add_argument("--phase-timeout", type=float, default=180.0, help="deadline of each phase, s")
    args = parser.parse_args(argv)
    return asyncio.run(asyncio.wait_for(run(args), timeout=args.phase_timeout * 6))


if __name__ == "__main__":
    sys.exit(main())
